"""Secret files: created 0600 atomically, refused when their mode lets others read them.

Used for the node key of the key store, the pre-shared authentication secret of the classical
channel and the private keys of the development PKI.  Nothing read here ever appears in an
exception message: errors name the file and the problem, never the content.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(RuntimeError):
    """A secret file is missing, unreadable, of the wrong size, or readable by others."""


def write_secret(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise SecretFileError(f"{path} already exists; refusing to overwrite a secret file. "
                              f"Remove it first if you really mean to replace it.")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL + mode 0600 at creation: the file is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)               # the umask can only remove bits; make it exact
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def check_mode(path: str | os.PathLike, what: str) -> None:
    """Raise :class:`SecretFileError` unless ``path`` is a regular file with no group/other bits."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist.") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file.")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SecretFileError(
            f"{what} {path} has mode {mode:04o}, readable or writable by others; expected 0600. "
            f"Run `chmod 600 {path}` if the file has not leaked, or replace the secret if it may have.")


def read_secret(path: str | os.PathLike, what: str, *, size: int | None = None,
                min_size: int | None = None) -> bytes:
    """Return the bytes of secret file ``path`` after checking its mode and size."""
    check_mode(path, what)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}.") from None
    if size is not None and len(data) != size:
        raise SecretFileError(f"{what} {path} holds {len(data)} bytes; expected exactly {size}. "
                              f"Is this the right file?")
    if min_size is not None and len(data) < min_size:
        raise SecretFileError(f"{what} {path} holds {len(data)} bytes; expected at least {min_size}.")
    return data


def load_or_create_secret(path: str | os.PathLike, what: str, size: int) -> bytes:
    """Return the ``size``-byte secret in ``path``, creating it from the OS CSPRNG if absent."""
    path = Path(path)
    if not path.exists():
        try:
            write_secret(path, secrets.token_bytes(size))
        except SecretFileError:
            pass                          # another process created it first: read theirs
    return read_secret(path, what, size=size)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

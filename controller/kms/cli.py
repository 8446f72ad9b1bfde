"""``qkdnode pki ...`` and ``qkdnode keys ...``: thin commands over :mod:`controller.kms`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

pki_app = typer.Typer(help="Development PKI for the KMEs and SAEs.", no_args_is_help=True)
keys_app = typer.Typer(help="The key store and the KME's key pool.", no_args_is_help=True)

_err = Console(stderr=True)
_out = Console()


def _fail(message: str, code: int = 1):
    _err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@pki_app.command("init")
def pki_init(
    folder: Path = typer.Option(..., "--dir", help="Folder to create the CA and certificates in."),
    kme: List[str] = typer.Option([], "--kme", help="A KME ID (server certificate); repeat."),
    sae: List[str] = typer.Option([], "--sae", help="An SAE ID (client certificate, CN = ID); repeat."),
    days: int = typer.Option(365, min=1, help="Validity in days."),
    as_json: bool = typer.Option(False, "--json", help="Print the file paths as one JSON object."),
):
    """Create a development CA, KME server certificates and SAE client certificates (keys 0600)."""
    from .pki import PKIError, init_pki
    from .secretfile import SecretFileError
    try:
        lay = init_pki(folder, kme, sae, days=days)
    except (PKIError, SecretFileError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write under {folder}: {exc.strerror or exc}.")
    files = {"ca": str(lay.ca_cert),
             "kme": {n: {"cert": str(c), "key": str(k)} for n, (c, k) in lay.kmes.items()},
             "sae": {n: {"cert": str(c), "key": str(k)} for n, (c, k) in lay.saes.items()}}
    if as_json:
        print(json.dumps(files))
        return
    table = Table("role", "ID", "certificate", "private key (0600)", title=f"development PKI in {folder}")
    table.add_row("CA", "", str(lay.ca_cert), str(lay.ca_key))
    for role, items in (("KME", lay.kmes), ("SAE", lay.saes)):
        for name, (c, k) in items.items():
            table.add_row(role, name, str(c), str(k))
    _out.print(table)


@keys_app.command("status")
def keys_status(
    db: Optional[Path] = typer.Option(None, "--db", help="Key store database (SQLite file)."),
    node_key: Optional[Path] = typer.Option(None, "--node-key", help="The store's node key file "
                                            "(default: node.key next to --db)."),
    url: Optional[str] = typer.Option(None, "--url", help="Ask a KME instead: its API base, e.g. "
                                      "https://127.0.0.1:8443/api/v1/keys."),
    slave: Optional[str] = typer.Option(None, "--slave", help="With --url: the slave SAE ID."),
    cert: Optional[Path] = typer.Option(None, "--cert", help="With --url: this SAE's certificate."),
    key: Optional[Path] = typer.Option(None, "--key", help="With --url: this SAE's private key."),
    ca: Optional[Path] = typer.Option(None, "--ca", help="With --url: the CA certificate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Print the key pool: from a local key store (--db) or a KME's ETSI 014 status (--url)."""
    if (db is None) == (url is None):
        _fail("give either --db (a local key store) or --url (a KME), not both and not neither.")
    if url is not None:
        info = _remote_status(url, slave, cert, key, ca)
    else:
        info = _local_status(db, node_key or db.with_name("node.key"))
    if as_json:
        print(json.dumps(info))
        return
    table = Table(show_header=False, box=None)
    for k, v in info.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    _out.print(table)


def _local_status(db: Path, node_key: Path) -> dict:
    from .store import KeyStore, KeyStoreError
    if not db.is_file():
        _fail(f"no key store at {db}; expected the SQLite file the node writes (see docs/kms.md).")
    try:
        with KeyStore(db, node_key) as store:
            st = store.status()
            key_size = store.key_size
    except KeyStoreError as exc:
        _fail(str(exc))
    return {"store": str(db), "key_size_bits": key_size, "available_keys": st.available,
            "available_bits": st.available_bits, "reserved_master": st.reserved_master,
            "reserved_slave": st.reserved_slave, "delivered_keys": st.delivered, "blocks": st.blocks,
            "max_key_count": st.max_key_count, "fill": round(st.fill, 6)}


def _remote_status(url, slave, cert, key, ca) -> dict:
    import http.client
    import ssl
    import urllib.parse

    from .etsi014 import client_ssl_context
    from .pki import PKIError
    missing = [n for n, v in (("--slave", slave), ("--cert", cert), ("--key", key), ("--ca", ca)) if not v]
    if missing:
        _fail(f"--url needs {', '.join(missing)} as well (the SAE's certificate, key and the CA).")
    try:
        ctx = client_ssl_context(ca, cert, key)
    except (PKIError, ssl.SSLError, OSError) as exc:
        _fail(f"cannot load the SAE credentials: {exc}")
    parts = urllib.parse.urlsplit(url.rstrip("/"))
    if parts.scheme != "https" or not parts.hostname:
        _fail(f"{url!r} is not an https:// URL of a KME's API base.")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=ctx, timeout=10)
    try:
        conn.request("GET", f"{parts.path}/{urllib.parse.quote(slave)}/status")
        resp = conn.getresponse()
        body = resp.read()
    except ssl.SSLError as exc:
        _fail(f"TLS with {url} failed ({exc.reason or exc}): is the KME's certificate from CA {ca}, "
              f"and this SAE's certificate from the CA the KME trusts?")
    except OSError as exc:
        _fail(f"cannot reach {url}: {exc.strerror or exc}.")
    finally:
        conn.close()
    if resp.status != 200:
        detail = body.decode("utf-8", "replace")[:300]
        _fail(f"the KME answered {resp.status}: {detail or '(no body)'}"
              + (" — this SAE is not authorised on that KME." if resp.status == 401 else ""))
    return json.loads(body)


@keys_app.command("psk")
def keys_psk(
    out: Path = typer.Option(..., "--out", help="File to write (mode 0600); copy it to the peer securely."),
    messages: int = typer.Option(4096, min=1, help="Authenticated messages each way it can pay for."),
):
    """Write a fresh pre-shared secret for the classical channel's authentication."""
    from controller.channel import AuthKeyPool

    from .secretfile import SecretFileError
    try:
        path = AuthKeyPool.create_secret_file(out, messages)
    except SecretFileError as exc:
        _fail(str(exc))
    _out.print(f"wrote {path} (0600): hash key + {messages} one-time tags each way. Give the peer "
               f"controller the same file over a trusted path.")

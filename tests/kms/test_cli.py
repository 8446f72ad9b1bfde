"""`qkdnode pki init`, `qkdnode keys status` (local store and a KME over mutual TLS), `keys psk`."""

import json
import os
import stat

from typer.testing import CliRunner

from controller.cli import app
from controller.kms.store import KeyStore

runner = CliRunner()


def test_pki_init_writes_0600_keys_and_refuses_a_second_ca(tmp_path):
    folder = tmp_path / "pki"
    r = runner.invoke(app, ["pki", "init", "--dir", str(folder), "--kme", "alice-kme",
                            "--kme", "bob-kme", "--sae", "sae-a", "--sae", "sae-b", "--json"])
    assert r.exit_code == 0, r.output
    files = json.loads(r.stdout)
    assert set(files["kme"]) == {"alice-kme", "bob-kme"} and set(files["sae"]) == {"sae-a", "sae-b"}
    for entry in [*files["kme"].values(), *files["sae"].values()]:
        assert stat.S_IMODE(os.stat(entry["key"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder / "ca.key").st_mode) == 0o600
    again = runner.invoke(app, ["pki", "init", "--dir", str(folder), "--sae", "sae-c"])
    assert again.exit_code == 1 and "already holds a CA" in again.output
    bad = runner.invoke(app, ["pki", "init", "--dir", str(tmp_path / "x"), "--sae", "bad name!"])
    assert bad.exit_code == 1 and "not a valid ID" in bad.output


def test_keys_status_local_store(tmp_path):
    with KeyStore(tmp_path / "keys.db", tmp_path / "node.key", max_key_count=10) as s:
        s.add_block("b", bytes(range(256)) * 1)
    r = runner.invoke(app, ["keys", "status", "--db", str(tmp_path / "keys.db"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["available_keys"] == 8 and info["key_size_bits"] == 256
    os.chmod(tmp_path / "node.key", 0o644)
    r = runner.invoke(app, ["keys", "status", "--db", str(tmp_path / "keys.db")])
    assert r.exit_code == 1 and "0600" in r.output
    r = runner.invoke(app, ["keys", "status"])
    assert r.exit_code == 1 and "--db" in r.output


def test_keys_status_from_a_kme(link, pki):
    link.drain()
    link.fill(3)
    cert, key = pki.saes["sae-a"]
    args = ["keys", "status", "--url", link.alice_url, "--slave", "sae-b", "--cert", str(cert),
            "--key", str(key), "--ca", str(pki.ca_cert)]
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored_key_count"] == 3
    cert_x, key_x = pki.saes["sae-x"]
    r = runner.invoke(app, args[:6] + ["--cert", str(cert_x), "--key", str(key_x), "--ca", str(pki.ca_cert)])
    assert r.exit_code == 1 and "401" in r.output and "not authorised" in r.output


def test_keys_psk(tmp_path):
    r = runner.invoke(app, ["keys", "psk", "--out", str(tmp_path / "psk.bin"), "--messages", "10"])
    assert r.exit_code == 0, r.output
    assert os.path.getsize(tmp_path / "psk.bin") == 16 + 32 * 10
    assert stat.S_IMODE(os.stat(tmp_path / "psk.bin").st_mode) == 0o600
    r = runner.invoke(app, ["keys", "psk", "--out", str(tmp_path / "psk.bin")])
    assert r.exit_code == 1 and "refusing to overwrite" in r.output

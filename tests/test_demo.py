"""`qkdnode demo` end to end: the behavioural board on a real TCP socket, through the CLI."""

import json

from typer.testing import CliRunner

from controller.cli import app
from hil.demo import run_demo
from hil.model import ModelBoard, ModelServer


def test_demo_cli_passes_and_reports(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--json", "--seed", "7", "--stream-bytes", "5000"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["stream_bytes"] == 5000
    assert report["info"]["id"] == "0x514B444E"
    assert report["counters"]["link.crc_errors"] == 0


def test_demo_fails_loudly_on_a_corrupting_link():
    """A board that corrupts its first three replies: the demo still completes (retries) but
    reports the CRC errors the host saw, and fails."""
    with ModelServer(ModelBoard(corrupt_replies=3)) as server:
        report = run_demo(server.url, stream_bytes=2000, register_checks=20, seed=1,
                          progress=lambda line: None)
    assert not report.ok
    assert any("CRC" in f for f in report.failures), report.failures


def test_demo_cli_bad_url_exits_non_zero():
    result = CliRunner().invoke(app, ["demo", "--url", "socket://127.0.0.1:1"])
    assert result.exit_code != 0
    assert "error" in result.output.lower()

"""The qkdnode CLI through typer's CliRunner: versions, board info over TCP, bench, clear errors."""

import json
import re
import signal
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from controller import __version__
from controller.cli import app, available_benches
from controller.device import Device
from gateware.spec import DEVICE_ID, GATEWARE_VERSION, PROTOCOL_VERSION

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout and f"wire protocol {PROTOCOL_VERSION}" in result.stdout


def test_board_info(model):
    result = runner.invoke(app, ["board", "info", "--url", model.url])
    assert result.exit_code == 0, result.output
    assert "0x514B444E" in result.stdout
    assert ".".join(map(str, GATEWARE_VERSION)) in result.stdout


def test_board_info_json(model):
    result = runner.invoke(app, ["board", "info", "--url", model.url, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["id"] == "0x514B444E" and info["protocol"] == PROTOCOL_VERSION and info["role"] == "LINK"


@pytest.mark.parametrize("url, says", [
    ("ftp://x", "Accepted forms"),
    ("socket://127.0.0.1", "needs a host and a port"),
    ("/dev/ttyDOESNOTEXIST", "could not open"),
])
def test_board_info_bad_url(url, says):
    result = runner.invoke(app, ["board", "info", "--url", url])
    assert result.exit_code != 0
    assert says in result.output and url in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_board_info_no_response(silent_server):
    result = runner.invoke(app, ["board", "info", "--url", silent_server, "--timeout", "0.02",
                                 "--retries", "0"])
    assert result.exit_code == 1
    assert "no reply" in result.output and "powered" in result.output


def test_bench_unknown_lists_benches():
    result = runner.invoke(app, ["bench", "nosuchbench"])
    assert result.exit_code != 0
    assert "nosuchbench" in result.output and "link" in result.output
    assert "link" in available_benches()


def test_bench_link_json():
    result = runner.invoke(app, ["bench", "link", "--frames", "50", "--repeats", "1",
                                 "--stream-frames", "4", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("frames_per_s", "codec_mb_per_s", "link_efficiency", "payload_mbit_per_s_at_12mbaud"):
        assert key in figures
    assert figures["link_efficiency"] == figures["link_efficiency_expected"]
    assert figures["payload_bytes_per_wire_byte"] == pytest.approx(247 / 254)


def test_bench_bad_option_exits_nonzero():
    result = runner.invoke(app, ["bench", "link", "--frames", "many"])
    assert result.exit_code == 2


def test_board_model_bad_port():
    result = runner.invoke(app, ["board", "model", "--port", "70000"])
    assert result.exit_code != 0 and "65535" in result.output


def test_board_model_port_in_use():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["board", "model", "--port", str(port)])
    assert result.exit_code == 1 and "--port 0" in result.output


def test_board_model_serves_until_interrupted():
    """``qkdnode board model --port 0`` prints its URL, answers a client, and stops on Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-c", "from controller.cli import main; main()",
                             "board", "model", "--port", "0"],
                            stdout=subprocess.PIPE, text=True,
                            # Ctrl-C must reach it even when this run was started in the
                            # background by a shell (which leaves SIGINT ignored for children)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        url = re.search(r"socket://127\.0\.0\.1:\d+", line).group(0)
        with Device(url, timeout=1.0) as dev:
            assert dev.read("core.id") == DEVICE_ID
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


def test_docs_protocol_write_and_check(tmp_path):
    target = tmp_path / "protocol.md"
    result = runner.invoke(app, ["docs", "protocol", "--write", str(target)])
    assert result.exit_code == 0, result.output
    assert "wire protocol" in target.read_text()
    assert runner.invoke(app, ["docs", "protocol", "--check", "--write", str(target)]).exit_code == 0
    target.write_text(target.read_text() + "edited by hand\n")
    result = runner.invoke(app, ["docs", "protocol", "--check", "--write", str(target)])
    assert result.exit_code == 1 and "stale" in result.output


def test_model_sub_app_is_mounted_when_present():
    import importlib.util
    result = runner.invoke(app, ["--help"])
    mounted = importlib.util.find_spec("controller.cli_model") is not None
    assert ("model" in result.stdout) == mounted


def test_bench_own_check_message_reaches_the_operator():
    # a bench's own check raises SystemExit("message"): the message is printed, the exit is 2
    result = runner.invoke(app, ["bench", "reconcile", "--method", "cascade", "--bits", "2000",
                                 "--frames", "1", "--checks", "0"])
    assert result.exit_code == 2
    assert "--checks must be >= 1, got 0" in result.output

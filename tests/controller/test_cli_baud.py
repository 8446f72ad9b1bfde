"""The CLI's UART rate for a serial port: the named board's (boards/), an explicit --baud over it,
DEFAULT_BAUD without either; an unknown board is a clear error."""

from typer.testing import CliRunner

from boards import get_board
from controller.cli import _serial_baud, app
from controller.link.transport import DEFAULT_BAUD

runner = CliRunner()


def test_board_gives_the_rate():
    assert _serial_baud("icebreaker", None) == get_board("icebreaker").baud == 6_000_000
    assert _serial_baud("ulx3s", None) == get_board("ulx3s").baud == 3_000_000
    assert _serial_baud(None, None) == DEFAULT_BAUD


def test_explicit_baud_wins():
    assert _serial_baud("ulx3s", 1_000_000) == 1_000_000
    assert _serial_baud(None, 115_200) == 115_200


def test_unknown_board_is_refused(model):
    result = runner.invoke(app, ["board", "info", "--url", model.url, "--board", "nosuch"])
    assert result.exit_code != 0
    assert "nosuch" in result.output and "icebreaker" in result.output
    assert "Traceback" not in result.output


def test_board_info_with_board_over_tcp(model):
    result = runner.invoke(app, ["board", "info", "--url", model.url, "--board", "icebreaker"])
    assert result.exit_code == 0, result.output
    assert "0x514B444E" in result.stdout

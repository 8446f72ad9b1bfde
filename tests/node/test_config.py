"""node.toml: a good file loads; every mistake is named with its section, key and a fix."""


import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.config import ConfigError, load_config

GOOD = """
[node]
role = "alice"
name = "alice-1"
data_dir = "data"

[board]
url = "socket://127.0.0.1:7001"
slot_period = 6

[peer]
listen = "127.0.0.1:7100"
psk = "channel.psk"

[protocol]
block_slots = 2000000
intensities = [0.5, 0.1, 0.0002]
probabilities = [0.4, 0.4, 0.2]
max_qber = 0.05

[metrics]
port = 9100
"""


def _write(tmp_path, text, psk=True):
    if psk:
        (tmp_path / "channel.psk").write_bytes(b"x" * 64)
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_paths_relative_to_the_file(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.role == "alice" and cfg.peer.listen == ("127.0.0.1", 7100)
    assert cfg.peer.psk == tmp_path / "channel.psk" and cfg.data_dir == tmp_path / "data"
    assert cfg.protocol.max_qber == 0.05 and cfg.protocol.method == "two-decoy"
    assert cfg.block_slots == 2_000_000 and cfg.metrics_port == 9100 and cfg.kme is None
    assert cfg.protocol.reconciliation == "cascade"
    cfg = load_config(_write(tmp_path, GOOD.replace("max_qber = 0.05", 'max_qber = 0.05\nreconciliation = "ldpc"')))
    assert cfg.protocol.reconciliation == "ldpc"


@pytest.mark.parametrize("change, expect", [
    (('role = "alice"', 'role = "carol"'), "[node] role: must be 'alice' or 'bob'"),
    (('url = "socket://127.0.0.1:7001"', ''), "[board] url: missing"),
    (('listen = "127.0.0.1:7100"', 'listen = "localhost"'), "[peer] listen: expected HOST:PORT"),
    (('listen = "127.0.0.1:7100"', ''), "give exactly one of listen"),
    (("probabilities = [0.4, 0.4, 0.2]", "probabilities = [0.5, 0.4, 0.2]"), "must sum to 1"),
    (("max_qber = 0.05", "max_qber = 0.7"), "[protocol] max_qber: must be between 0 and 0.5"),
    (("block_slots = 2000000", "block_slots = 12"), "[protocol] block_slots"),
    (("max_qber = 0.05", 'max_qber = 0.05\nreconciliation = "turbo"'),
     "[protocol] reconciliation: must be one of 'cascade', 'ldpc'"),
    (("slot_period = 6", 'slot_period = "fast"'), "[board] slot_period: expected int"),
    (("[metrics]", "[metrix]"), "[metrix]: unknown section"),
    (("slot_period = 6", 'slot_period = 6\nname = "icebraker"'),
     "[board] name: is not a board; boards are icebreaker"),
    (("slot_period = 6", "slot_period = 6\nbaud = 0"), "[board] baud"),
])
def test_each_mistake_is_named(tmp_path, change, expect):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, GOOD.replace(*change)))
    assert expect in str(exc.value)


def test_board_link_rate_follows_the_board_unless_baud_is_given(tmp_path):
    from boards import get_board
    from controller.link.transport import DEFAULT_BAUD
    assert load_config(_write(tmp_path, GOOD)).board.baudrate == DEFAULT_BAUD
    named = GOOD.replace("slot_period = 6", 'slot_period = 6\nname = "icebreaker"')
    cfg = load_config(_write(tmp_path, named))
    assert cfg.board.baudrate == get_board("icebreaker").baud == 6_000_000
    forced = named.replace('name = "icebreaker"', 'name = "icebreaker"\nbaud = 3000000')
    assert load_config(_write(tmp_path, forced)).board.baudrate == 3_000_000


def test_problems_are_all_listed_at_once_and_missing_files_named(tmp_path):
    text = GOOD.replace('role = "alice"', 'role = "eve"').replace("max_qber = 0.05", "max_qber = -1")
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text, psk=False))
    msg = str(exc.value)
    assert "3 problem(s)" in msg and "channel.psk does not exist" in msg and "[node] role" in msg


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[node\nrole="))


def test_run_cli_reports_config_errors_and_role_mismatch(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["run", "--role", "alice", "--config",
                              str(_write(tmp_path, GOOD.replace('role = "alice"', 'role = "x"')))])
    assert bad.exit_code == 1 and "[node] role" in bad.output
    other = runner.invoke(app, ["run", "--role", "bob", "--config", str(_write(tmp_path, GOOD))])
    assert other.exit_code == 1 and "says role = 'alice'" in other.output


def test_node_boards_open_the_link_at_the_configured_rate(monkeypatch):
    from controller.link.errors import LinkError
    from controller.node import boards as node_boards
    from controller.node.protocol import Protocol
    seen = []

    def fake_device(url, **kw):
        seen.append((url, kw.get("baudrate")))
        raise LinkError("no board here")

    monkeypatch.setattr(node_boards, "Device", fake_device)
    for board in (node_boards.AliceBoard("/dev/ttyUSB9", Protocol(), baudrate=6_000_000),
                  node_boards.BobBoard("/dev/ttyUSB9", baudrate=6_000_000)):
        with pytest.raises(node_boards.BoardFault):
            board.open()
    assert seen == [("/dev/ttyUSB9", 6_000_000)] * 2

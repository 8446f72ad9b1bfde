"""`qkdnode demo` through the CLI: options, errors, and a short eavesdropper run with --json."""

import json
import shlex

from typer.testing import CliRunner

from controller.cli import app


def test_demo_cli_eavesdropper_json_shows_alarm_and_no_key(tmp_path):
    params = tmp_path / "model.json"
    result = CliRunner().invoke(app, ["demo", "--json", "--seed", "5", "--distance-km", "0",
                                      "--block-size", "5000", "--blocks", "1",
                                      "--eve", "intercept-resend:0.3", "--model-params", str(params)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in ("secret_bits", "secret_key_rate_bps", "qber", "keys_match", "model_key_rate_bps"):
        assert key in report
    assert report["alarms"] == 1 and report["secret_bits"] == 0, report
    assert report["keys_match"] is False and report["ok"] is True
    # the printed command evaluates the file the demo wrote to the same model rate
    argv = shlex.split(report["model_command"])
    assert argv[:3] == ["qkdnode", "model", "rate"] and str(params) in argv
    model = CliRunner().invoke(app, argv[1:])
    assert model.exit_code == 0, model.output
    again = json.loads(model.output)
    assert again["key_rate_bps"] == report["model_key_rate_bps"]
    assert again["block_size"] == 5000 and again["distance_km"] == 0


def test_demo_cli_refuses_bad_options():
    runner = CliRunner()
    bad_eve = runner.invoke(app, ["demo", "--eve", "pns:0.3"])
    assert bad_eve.exit_code != 0 and "intercept-resend" in bad_eve.output
    board = runner.invoke(app, ["demo", "--board", "fpga"])
    assert board.exit_code != 0 and "model" in board.output and "rtl" in board.output
    alice = runner.invoke(app, ["demo", "--alice", "rtl"])
    assert alice.exit_code != 0 and "--board rtl" in alice.output
    ec = runner.invoke(app, ["demo", "--reconciliation", "turbo"])
    assert ec.exit_code != 0 and "cascade, ldpc" in ec.output

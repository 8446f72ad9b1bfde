"""`qkdnode demo` through the CLI: options, errors, and a short eavesdropper run with --json."""

import json

from typer.testing import CliRunner

from controller.cli import app


def test_demo_cli_eavesdropper_json_shows_alarm_and_no_key():
    result = CliRunner().invoke(app, ["demo", "--json", "--seed", "5", "--distance-km", "0",
                                      "--block-size", "5000", "--blocks", "1",
                                      "--eve", "intercept-resend:0.3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in ("secret_bits", "secret_key_rate_bps", "qber", "keys_match", "model_key_rate_bps"):
        assert key in report
    assert report["alarms"] == 1 and report["secret_bits"] == 0, report
    assert report["keys_match"] is False and report["ok"] is True


def test_demo_cli_refuses_bad_options():
    runner = CliRunner()
    bad_eve = runner.invoke(app, ["demo", "--eve", "pns:0.3"])
    assert bad_eve.exit_code != 0 and "intercept-resend" in bad_eve.output
    rtl = runner.invoke(app, ["demo", "--board", "rtl"])
    assert rtl.exit_code != 0 and "--board model" in rtl.output

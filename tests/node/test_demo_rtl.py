"""`qkdnode demo --board rtl` end to end: Bob's gateware in Verilator (his RTL twin) behind the
node, the behavioural Alice, one block at the rtl defaults (``hil.demo.RTL_DEFAULTS``: 0 km,
90 % detectors, 40-cycle slots, n_Z = 50 000, 1 070 156 slots), both KMEs; the SAEs' keys match,
and `qkdnode model rate --params` gives the summary's model rate back.

About 45 million twin clock cycles (165 per detection, the UART's record rate): measured 20 CPU
minutes (twin ~11.5, host ~9) and 53 min wall at load 15 on 2 cores (docs/BENCHMARKS.md).
"""

import json
import shlex

import pytest
from typer.testing import CliRunner

from controller.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.cocotb]

SEED = 20261127


def test_rtl_demo_makes_matching_keys_and_the_model_cli_agrees(tmp_path):
    params = tmp_path / "model.json"
    result = CliRunner().invoke(app, ["demo", "--board", "rtl", "--json", "--seed", str(SEED),
                                      "--keys", "2", "--model-params", str(params)])
    lines = result.output.strip().splitlines()
    assert lines, (result.output, SEED)
    report = json.loads(lines[-1])
    print({k: report.get(k) for k in ("secret_bits", "qber", "block_slots", "secret_key_rate_bps",
                                      "model_key_rate_bps", "wall_seconds", "keys_match")})
    assert result.exit_code == 0, (report.get("failures"), report.get("history"), SEED)
    assert report["board"] == "rtl" and report["blocks"] == 1, (report, SEED)
    assert report["secret_bits"] > 0 and report["keys_match"] and report["stores_agree"], \
        (report["history"], SEED)
    assert report["qber"] < 0.05, (report["qber"], SEED)
    argv = shlex.split(report["model_command"])
    model = CliRunner().invoke(app, argv[1:])
    assert model.exit_code == 0, model.output
    assert json.loads(model.output)["key_rate_bps"] == report["model_key_rate_bps"]

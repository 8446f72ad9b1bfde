"""`qkdnode model rate` gives the demo's `model_key_rate_bps` back from the inputs the demo
writes (`--model-params FILE`, or the explicit options of its `model_command`)."""

import json
import shlex

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.node.protocol import Protocol
from hil.demo import SimBench, _model_command, link_plan

PROTO = Protocol()


@pytest.fixture(scope="module")
def plan():
    """The demo's plan of a short, efficient link (0 km, 90 % detectors, n_Z = 5e4), where the
    finite-key rate is positive and every input matters."""
    bench = SimBench(distance_km=0.0, proto=PROTO, efficiency=0.9, slot_period=40)
    slots, rate_per_slot, figures = link_plan(PROTO, bench.optics_model, bench.slot_hz, 50_000)
    return bench.slot_hz, rate_per_slot, figures["inputs"]


def _rate(args):
    result = CliRunner().invoke(app, ["model", "rate", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_params_file_gives_the_demos_model_rate(plan, tmp_path):
    slot_hz, rate_per_slot, inputs = plan
    assert rate_per_slot > 0
    path = tmp_path / "model.json"
    command = _model_command(inputs, path)
    argv = shlex.split(command)
    assert argv[:3] == ["qkdnode", "model", "rate"] and "--params" in argv
    got = _rate(argv[3:])
    assert got["key_rate_per_pulse"] == rate_per_slot
    assert got["key_rate_bps"] == rate_per_slot * slot_hz
    # the demo's inputs are not a preset's: the lim2014 preset at the same point differs
    preset = _rate(["--preset", "lim2014", "--distance-km", "0", "--decoy", "two-decoy",
                    "--block-size", "50000", "--json"])
    assert preset["key_rate_per_pulse"] != pytest.approx(rate_per_slot, rel=0.01)


def test_explicit_options_give_the_demos_model_rate(plan):
    slot_hz, rate_per_slot, inputs = plan
    argv = shlex.split(_model_command(inputs, None))
    assert "--params" not in argv and "--f-ec" in argv and "--afterpulse-slots" in argv
    got = _rate(argv[3:])
    assert got["key_rate_per_pulse"] == rate_per_slot
    assert got["key_rate_bps"] == rate_per_slot * slot_hz
    # each input is used: a different afterpulse placement changes the rate
    i = argv.index("--afterpulse-slots")
    argv[i + 1] = "same"
    assert _rate(argv[3:])["key_rate_per_pulse"] != rate_per_slot


def test_bad_params_file_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "something else"}))
    result = CliRunner().invoke(app, ["model", "rate", "--params", str(path)])
    assert result.exit_code != 0 and "model-inputs" in result.output
    missing = CliRunner().invoke(app, ["model", "rate", "--params", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "cannot read" in missing.output

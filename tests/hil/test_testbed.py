"""hil.testbed: the simulated bench on loopback, the VOA over VISA changing the optics' loss, a
realtime run from the host API, and ``qkdnode testbed up``."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.alice import AliceFeeder, ChoiceSampler
from controller.device import Device
from controller.instruments import PhotonDetector, VariableAttenuator
from controller.tagger import Records, Tagger, reconcile
from hil.fibre import TimeBase
from hil.suite.bench import SeededSource
from hil.testbed import Testbed

REPO = Path(__file__).resolve().parents[2]
SEED = 11


def test_bench_urls_and_voa_over_visa():
    with Testbed(realtime=False, distance_km=25.0, seed=SEED) as bed:
        info = bed.info()
        assert info["alice_url"].startswith("socket://127.0.0.1:")
        assert info["bob_url"].startswith("socket://127.0.0.1:")
        assert set(info["visa"]) == {"laser", "voa", "powermeter", "detector"}
        assert all(r.startswith("TCPIP::127.0.0.1::") and r.endswith("::SOCKET")
                   for r in info["visa"].values())
        with Device(bed.alice_url, timeout=2.0) as alice, Device(bed.bob_url, timeout=2.0) as bob:
            assert alice.info()["role"] == "ALICE" and bob.info()["role"] == "BOB"
        fibre_db = bed.fibre.model.channel_loss_db()
        assert fibre_db == pytest.approx(0.21 * 25)
        voa = VariableAttenuator(bed.resources["voa"])
        try:
            voa.attenuation_db = 12.5
            voa.wait()
            assert bed.fibre.model.channel_loss_db() == pytest.approx(fibre_db + 12.5)
            voa.output_enabled = False
            voa.wait()
            assert bed.fibre.model.channel_loss_db() == float("inf")
        finally:
            voa.close()
        det = PhotonDetector(bed.resources["detector"])
        try:
            # the instrument's power-on 10 % is the preset's 4.5 %; 20 % doubles it
            assert det.efficiency_percent == 10
            assert bed.fibre.model.detector.efficiency_percent == pytest.approx(4.5)
            det.efficiency_percent = 20
            det.wait()
            assert bed.fibre.model.detector.efficiency_percent == pytest.approx(9.0)
            bed.fibre.play(0, [0] * 1000, [0] * 1000, [0] * 1000)
            bed.fibre.flush()
            assert bed.fibre.model.config.receiver.efficiency == pytest.approx((0.09,) * 4)
            assert det.count_rate_hz == pytest.approx(bed.fibre.stats["clicks"] / 1e-3, rel=0.01)
        finally:
            det.close()


def test_realtime_bench_with_the_host_api():
    """Alice plays on her clock; the pump moves the light; Bob's records reconcile and align."""
    tb = TimeBase(slot_cycles=240, frame_slots=1024)       # 200 kslot/s: easy for a loaded host
    with Testbed(realtime=True, distance_km=0.0, timebase=tb, seed=SEED) as bed:
        with Device(bed.alice_url, timeout=2.0) as alice, Device(bed.bob_url, timeout=2.0) as bob:
            tagger = Tagger(bob)
            tagger.configure(**tb.bob_settings())
            tagger.clear()
            tagger.start()
            feeder = AliceFeeder(alice, ChoiceSampler(0.5, 0.7, 0.2, 0.1), SeededSource(SEED),
                                 **tb.alice_settings())
            sent = feeder.run(0.5)
            parts = []
            for _ in range(200):        # the pump hands Bob the last frames after the stop
                parts.append(tagger.read_records(timeout=0.05))
                counters = tagger.counters()
                if reconcile(counters, Records.concat(parts)).ok and not bed.fibre._queue:
                    break
            records = Records.concat(parts)
            report = reconcile(counters, records)
            assert report.ok, report.problems
            assert len(records) > 100, f"{len(records)} detections in {sent['slot'].size} slots"
            # Bob's frames are Alice's: every detection maps to a played slot
            first = feeder.record.runs[-1][0]
            slots = first + records.frame * tb.frame_slots + records.slot
            assert slots.min() >= sent["slot"][0] and slots.max() <= sent["slot"][-1]
            # underflows (a busy host) are the board's and the fibre's alike
            assert bed.fibre.stats["underflow_slots"] == alice.read("modulator.underflow_slots")
            usable = sent["usable"][slots - sent["slot"][0]]
            assert np.count_nonzero(~usable) <= 0.05 * len(records) + 5


def test_cli_testbed_up_prints_json_and_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "testbed", "up", "--json",
                             "--distance-km", "10"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # Ctrl-C must reach it even when this run was started in the
                            # background by a shell (which leaves SIGINT ignored for children)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        info = json.loads(proc.stdout.readline())
        assert info["distance_km"] == 10.0 and info["boards"] == "model"
        with Device(info["bob_url"], timeout=2.0) as bob:
            assert bob.info()["role"] == "BOB"
        voa = VariableAttenuator(info["visa"]["voa"])
        try:
            voa.attenuation_db = 3.0
            assert voa.attenuation_db == pytest.approx(3.0)
        finally:
            voa.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0, proc.stderr.read()


def test_cli_testbed_up_rejects_unknown_boards():
    result = subprocess.run([sys.executable, "-m", "controller.cli", "testbed", "up", "--boards",
                             "fpga"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "model, rtl" in result.stderr


def test_model_bob_built_as_a_boards_tagger():
    """``bob_tagger``: the model Bob reports the board's TaggerParams in ``tagger.info`` (the
    iCEBreaker's: no hardware histograms); Bob's twin takes only the default."""
    from boards import get_board
    from gateware.cores.tagger import TaggerParams
    params = get_board("icebreaker").tagger
    with Testbed(realtime=False, seed=SEED, bob_tagger=params) as bed:
        with Device(bed.bob_url, timeout=2.0) as bob:
            tagger = Tagger(bob)
            assert (tagger.hist_bins, tagger.hist_source) == (params.hist_bins, "records") == \
                (0, "records")
            assert bob.fields("tagger.info")["fifo_words_div16"] * 16 == params.fifo_words
    with pytest.raises(ValueError, match="twin is built with the default"):
        Testbed("rtl", bob_tagger=TaggerParams(hist_bins=8))

"""Alice's host side: unbiased sampling, packing, sources, the sent record, and the feeder's flow
control against the behavioural board over TCP (its slot-by-slot trace is the reference)."""

import time

import numpy as np
import pytest

from controller.alice import (
    RESOLUTION, ChoiceSampler, FileSource, InsecurePattern, OSSource, SentRecord, SerialSource,
    SourceExhausted, AliceFeeder, open_source, pack_choices, unpack_choices,
)
from controller.device import Device
from gateware.spec.modulator import (ChoiceByteLayout, Intensity, ReportKind, ReportLayout,
                                     REPORT_BYTES, choice_fires)
from gateware.spec.registers import Role
from hil.model import ModelBoard, ModelServer

SEED = 20261127


class SeededSource:
    """Deterministic 'random' bytes for tests (numpy PCG64 from a seed)."""

    name = "seeded"

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def read(self, n):
        return self.rng.bytes(n)


class ScriptedSource:
    """Exactly the given bytes, then SourceExhausted."""

    def __init__(self, data):
        self.data = bytearray(data)

    def read(self, n):
        if n > len(self.data):
            raise SourceExhausted("script ended")
        out = bytes(self.data[:n])
        del self.data[:n]
        return out


def _bound(p, n, sigmas=5.0):
    return sigmas * np.sqrt(p * (1 - p) / n)


def test_sampler_bias_matches_probabilities():
    n = 200_000
    probs = {"p_x": 0.12, "p_signal": 0.7, "p_decoy": 0.2, "p_vacuum": 0.1}
    bit, basis, intensity = ChoiceSampler(**probs).sample(SeededSource(SEED), n)
    observed = {"p_x": basis.mean(), "p_signal": (intensity == 0).mean(),
                "p_decoy": (intensity == 1).mean(), "p_vacuum": (intensity == 2).mean(),
                "bit": bit.mean()}
    want = dict(probs, bit=0.5)
    for key, p in want.items():
        assert abs(observed[key] - p) < _bound(p, n), \
            f"seed {SEED}: {key} observed {observed[key]:.4f}, expected {p} +- {_bound(p, n):.4f}"
    assert set(np.unique(intensity)) <= {0, 1, 2}
    # Basis and intensity are drawn independently: X among signal slots is still p_x.
    x_given_signal = basis[intensity == 0].mean()
    assert abs(x_given_signal - 0.12) < _bound(0.12, int((intensity == 0).sum()))


def test_rejection_discards_the_biased_top_words():
    limit = (1 << 32) // RESOLUTION * RESOLUTION
    words = [0xFFFF_FFFF, limit, limit - 1, 5] + [7] * 16
    raw = b"".join(w.to_bytes(4, "little") for w in words)
    got = ChoiceSampler.uniform(ScriptedSource(raw), 2)
    assert list(got) == [(limit - 1) % RESOLUTION, 5]


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        ChoiceSampler(p_signal=0.5, p_decoy=0.1, p_vacuum=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ChoiceSampler(p_x=1.5)
    # Degenerate probabilities give exactly one outcome.
    _, basis, intensity = ChoiceSampler(p_x=0.0, p_signal=0, p_decoy=1).sample(SeededSource(1), 1000)
    assert not basis.any() and (intensity == 1).all()


def test_pack_matches_the_spec_layout():
    bit, basis, intensity = ChoiceSampler(0.5, 0.5, 0.3, 0.2).sample(SeededSource(SEED), 64)
    data = pack_choices(bit, basis, intensity)
    assert len(data) == 32
    for i, byte in enumerate(data):
        view = ChoiceByteLayout.from_bits(byte)
        for j in range(2):
            slot = 2 * i + j
            assert (int(view[j].bit), view[j].basis.value, view[j].intensity.value) == \
                (bit[slot], basis[slot], intensity[slot])
    assert [list(a) for a in unpack_choices(data)] == [list(bit), list(basis), list(intensity)]
    with pytest.raises(ValueError, match="2 a byte"):
        pack_choices([1], [0], [0])


def test_sources(tmp_path):
    path = tmp_path / "qrng.bin"
    path.write_bytes(bytes(range(10)))
    src = open_source(str(path))
    assert isinstance(src, FileSource) and src.read(4) == bytes(range(4))
    with pytest.raises(SourceExhausted, match="ended after 6"):
        src.read(8)
    src.close()
    assert isinstance(open_source("os"), OSSource) and len(OSSource().read(16)) == 16
    with pytest.raises(FileNotFoundError, match="QRNG device path"):
        open_source(str(tmp_path / "missing"))
    serial_src = SerialSource("loop://", timeout=0.01)
    serial_src.port.write(b"\x01\x02\x03")
    assert serial_src.read(3) == b"\x01\x02\x03"
    with pytest.raises(SourceExhausted, match="gave 0 of 1"):
        serial_src.read(1)
    serial_src.close()


def _record(kind, first, count, lfsr=0):
    value = ReportLayout.const({"kind": kind, "lfsr": lfsr, "first_slot": first,
                                "count": count}).as_value().value
    return value.to_bytes(REPORT_BYTES, "little")


def test_record_applies_underflows():
    rec = SentRecord()
    rec.add([1, 0, 1, 1, 0, 0], [0, 1, 0, 1, 0, 1], [0, 1, 0, 0, 1, 0])
    raw = _record(ReportKind.START, 100, 0) + _record(ReportKind.UNDERFLOW, 102, 3) + \
        _record(ReportKind.STOP, 100, 7)
    rec.apply_reports(raw[:5])          # records may arrive split across frames
    rec.apply_reports(raw[5:])
    slots = rec.slots()
    assert list(slots["slot"]) == list(range(100, 107))
    assert list(slots["usable"]) == [True, True, False, False, False, True, True]
    assert list(slots["bit"]) == [1, 0, 0, 0, 0, 1, 1]
    assert list(slots["intensity"]) == [0, 1, 2, 2, 2, 0, 0]
    assert slots["pending"] == 2
    rec.drop_pending()
    assert rec.streamed == 4 and rec.for_distillation()["pending"] == 0


def test_record_refuses_lfsr_runs():
    rec = SentRecord()
    rec.apply_reports(_record(ReportKind.START, 0, 0, lfsr=1) + _record(ReportKind.STOP, 0, 0, lfsr=1))
    assert rec.insecure
    with pytest.raises(InsecurePattern, match="LFSR"):
        rec.for_distillation()


def _alice_model(**options):
    trace = []
    board = ModelBoard(role=Role.ALICE, alice_options={"trace": trace, **options})
    return ModelServer(board), trace


def _check_against_trace(slots, trace):
    """The record's slots are the model's played slots, choice for choice."""
    assert len(slots["slot"]) == len(trace), f"record has {len(slots['slot'])} slots, model {len(trace)}"
    for i in range(len(trace)):
        state, intensity, laser, _ = trace[i]
        if slots["usable"][i]:
            nibble = int(slots["bit"][i]) | int(slots["basis"][i]) << 1 | int(slots["intensity"][i]) << 2
            assert (state, intensity, laser) == (nibble & 3, int(slots["intensity"][i]),
                                                 int(choice_fires(nibble))), f"slot {i}"
        else:
            assert (intensity, laser) == (Intensity.VACUUM.value, 0), f"underflowed slot {i}"


def test_feeder_keeps_the_fifo_fed(tmp_path):
    """4000 slots/s from a 1024-byte FIFO (0.5 s of slots), fed for 1.5 s: no underflow, and the
    record matches what the model played."""
    server, trace = _alice_model(choices_depth=1024)
    with server, Device(server.url, timeout=0.5) as dev:
        feeder = AliceFeeder(dev, ChoiceSampler(0.2, 0.6, 0.3, 0.1), SeededSource(SEED),
                             slot_period=12_000, frame_slots=100, chunk=1024)
        feeder.configure()
        assert feeder.fifo_seconds == pytest.approx(0.512)
        slots = feeder.run(1.5)
        underflows = dev.read("modulator.underflow_slots")
    assert underflows == 0 and slots["usable"].all()
    assert len(slots["slot"]) > 4000
    _check_against_trace(slots, trace)
    assert feeder.record.slots()["pending"] == 0


def test_feeder_records_underflow_as_unusable():
    """A starved FIFO: the model reports the underflow; the record marks those slots."""
    server, trace = _alice_model(choices_depth=64)
    with server, Device(server.url, timeout=0.5) as dev:
        feeder = AliceFeeder(dev, ChoiceSampler(), SeededSource(SEED + 1), slot_period=12_000)
        feeder.configure()
        feeder.start()
        time.sleep(0.2)                 # 800 slots from 128 choices: the FIFO runs dry
        feeder.stop()
        underflows = dev.read("modulator.underflow_slots")
    slots = feeder.record.slots()
    assert underflows > 0 and int((~slots["usable"]).sum()) == underflows
    assert int(slots["usable"].sum()) == 128
    _check_against_trace(slots, trace)


def test_feeder_lfsr_run_is_flagged():
    server, _ = _alice_model(choices_depth=64)
    with server, Device(server.url, timeout=0.5) as dev:
        feeder = AliceFeeder(dev, slot_period=48_000)
        feeder.configure(lfsr=True)
        feeder.run(0.05)
        assert dev.fields("modulator.status")["lfsr"] == 1
    assert feeder.record.insecure
    with pytest.raises(InsecurePattern):
        feeder.record.for_distillation()


def test_cli_serves_an_alice_model():
    """`qkdnode board model --role alice` serves a board whose platform says ALICE."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "board", "model", "--port", "0",
                             "--role", "alice"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split()[4]
        with Device(url, timeout=0.5) as dev:
            assert dev.info()["role"] == "ALICE" and dev.read("modulator.choices_depth") == 4096
    finally:
        proc.terminate()
        proc.wait(timeout=10)

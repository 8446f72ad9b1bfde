"""cocotb test of Bob's whole image (``NodeTop``, role BOB) on Verilator, through its UART pins:
the tagger configured with WRITE frames, clicks from the detector BFM, the EVENTS stream read as
STREAM_D2H frames and decoded by the host decoder, counters read with BURST_READ; everything
compared with the golden model. Seed: COCOTB_RANDOM_SEED (logged)."""

import json
import os
import struct

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event
from cocotb.utils import get_sim_time

from controller.link.codec import FrameDecoder, encode_frame
from controller.tagger import decode, reconcile
from gateware.spec.protocol import MAX_BURST, Opcode, StreamChannel
from gateware.spec.registers import REGISTER_MAP
from gateware.spec.tagger import (CHANNELS, CHANNEL_COUNTERS, GLOBAL_COUNTERS, GateLayout,
                                  TaggerControl)
from hil.bfm.detector import DetectorSource, poisson, spaced
from hil.bfm.uart import UARTSink, UARTSource
from hil.tagger_model import Item, TaggerConfig, TaggerModel

N = int(os.environ["TAGGER_SAMPLES"])
DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
SEED = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
BYTE_CYCLES = 10 * DIVISOR
A = REGISTER_MAP.address


class Host:
    """The host side over the UART BFMs: numbered requests, and the EVENTS bytes collected."""

    def __init__(self, dut):
        self.dut = dut
        self.source = UARTSource(dut.rx, dut.clk, DIVISOR)
        self.sink = UARTSink(dut.tx, dut.clk, DIVISOR)
        self.decoder = FrameDecoder()
        self.events = bytearray()
        self.event_seqs = []
        self.event_times = []   # (sim time in ns, EVENTS bytes so far) at the end of each frame
        self.replies = {}
        self.got = Event()
        self.seq = 0
        cocotb.start_soon(self._collect())

    async def _collect(self):
        while True:
            raw = await self.sink.recv_until(0)
            for frame in self.decoder.feed(raw):
                if frame.opcode == Opcode.STREAM_D2H.value:
                    assert frame.payload[0] == StreamChannel.EVENTS.value, frame
                    self.events += frame.payload[1:]
                    self.event_seqs.append(frame.seq)
                    self.event_times.append((get_sim_time("ns"), len(self.events)))
                else:
                    self.replies[frame.seq] = frame
                    self.got.set()

    async def request(self, opcode, payload):
        seq = self.seq = (self.seq + 1) & 0xFF
        await self.source.send(encode_frame(opcode.value, seq, payload))
        for _ in range(400):
            if seq in self.replies:
                frame = self.replies.pop(seq)
                assert frame.opcode == opcode.value | 0x80, f"request {opcode.name}: {frame}"
                return frame.payload
            self.got.clear()
            await ClockCycles(self.dut.clk, BYTE_CYCLES)
        raise TimeoutError(f"no reply to {opcode.name} seq {seq}")

    async def write(self, path, value, index=0):
        await self.request(Opcode.WRITE, struct.pack(">HI", A(path, index), value))

    async def burst(self, first, count):
        values = []
        while count:
            n = min(count, MAX_BURST)
            payload = await self.request(Opcode.BURST_READ, struct.pack(">HB", first, n))
            values += struct.unpack_from(f">{n}I", payload, 3)
            first += n
            count -= n
        return values


@cocotb.test()
async def test_records_over_the_link(dut):
    seed = SEED + 100
    rng = np.random.default_rng(seed)
    dut._log.info("stimulus seed %d", seed)
    cocotb.start_soon(Clock(dut.clk, 20_834, unit="ps").start())
    pins = {f"det{ch}": getattr(dut, f"bob__det__{ch}") for ch in range(CHANNELS)}
    pins["sync"] = dut.bob__sync
    bfm = DetectorSource(pins, dut.clk, N)
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    host = Host(dut)
    await ClockCycles(dut.clk, 4)

    cfg = TaggerConfig(samples=N, slot_period=10, frame_slots=60, sync_delay=4, gate_start=2,
                       gate_width=7, dead_time=(4, 0, 12, 30), hist_shift=0)
    for name in ("slot_period", "frame_slots", "sync_delay", "hist_shift"):
        await host.write(f"tagger.{name}", getattr(cfg, name))
    await host.write("tagger.gate", GateLayout.const(
        {"start": cfg.gate_start, "width": cfg.gate_width}).as_value().value)
    for ch in range(CHANNELS):
        await host.write("tagger.dead_time", cfg.dead_time[ch], ch)
    await host.write("tagger.control", TaggerControl.const({"enable": 1}).as_value().value)

    bins = 24_000
    clicks = [poisson(rng, 0.0015, 0, bins, N) for _ in range(CHANNELS)]
    syncs = spaced(np.arange(25, bins - 3000, cfg.frame_bins), N)
    syncs = syncs[(syncs < 8000) | (syncs > 11_000)]
    model = TaggerModel(cfg).run(clicks, syncs)
    await bfm.play({**{f"det{ch}": clicks[ch] for ch in range(CHANNELS)}, "sync": syncs})
    want_bytes = model.words.size * 4
    for _ in range(2000):
        if len(host.events) >= want_bytes:
            break
        await ClockCycles(dut.clk, 25 * BYTE_CYCLES)
    await ClockCycles(dut.clk, 100 * BYTE_CYCLES)

    assert bytes(host.events) == model.words.astype(">u4").tobytes(), \
        f"seed {seed}: EVENTS bytes differ from the model's records " \
        f"({len(host.events)} bytes, model {want_bytes})"
    assert host.event_seqs == list(range(len(host.event_seqs))), "an EVENTS frame was lost"
    records = decode(bytes(host.events))
    det = model.items[model.items["kind"] == Item.DETECTION]
    assert np.array_equal(records.slot, det["slot"]) and np.array_equal(records.frame, det["frame"])

    first = A(f"tagger.{next(iter(CHANNEL_COUNTERS))}", 0)
    last = A(f"tagger.{list(GLOBAL_COUNTERS)[-1]}")
    values = await host.burst(first, last - first + 1)
    counters = {name: values[i * CHANNELS:(i + 1) * CHANNELS]
                for i, name in enumerate(CHANNEL_COUNTERS)}
    counters.update(zip(GLOBAL_COUNTERS, values[len(CHANNEL_COUNTERS) * CHANNELS:]))
    for name, want in model.counters.items():
        assert np.array_equal(counters[name], want), f"seed {seed}: {name} {counters[name]} != {want}"
    report = reconcile(counters, records)
    assert report.ok, report.problems
    hist = await host.burst(A("tagger.hist", 0), model.hist.size)
    assert np.array_equal(np.array(hist).reshape(model.hist.shape), model.hist)
    dut._log.info("%d records, %d events over the link, seed %d", model.words.size, det.size, seed)


@cocotb.test(skip=os.environ.get("BENCH_OUT") is None)
async def test_sustained_rate(dut):
    """Benchmark (run by ``bench/tagger.py``): clicks far above what the link carries; measure the
    EVENTS bytes and detections that reach the host per simulated second once the FIFO is full."""
    seed = SEED + 200
    rng = np.random.default_rng(seed)
    clk_hz = 48_000_000
    cocotb.start_soon(Clock(dut.clk, 20_834, unit="ps").start())
    pins = {f"det{ch}": getattr(dut, f"bob__det__{ch}") for ch in range(CHANNELS)}
    pins["sync"] = dut.bob__sync
    bfm = DetectorSource(pins, dut.clk, N)
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    host = Host(dut)
    slot_period = int(os.environ.get("BENCH_SLOT_PERIOD", "10"))
    frame_slots = int(os.environ.get("BENCH_FRAME_SLOTS", "4000"))
    clocks = int(os.environ.get("BENCH_CLOCKS", "120000"))
    rate = float(os.environ.get("BENCH_CLICK_RATE", "0.01"))   # clicks per bin per channel
    await host.write("tagger.slot_period", slot_period)
    await host.write("tagger.frame_slots", frame_slots)
    await host.write("tagger.control", TaggerControl.const({"enable": 1}).as_value().value)
    bins = clocks * N
    clicks = [poisson(rng, rate, 0, bins, N) for _ in range(CHANNELS)]
    syncs = np.arange(5, bins, slot_period * frame_slots)
    play = cocotb.start_soon(bfm.play({**{f"det{ch}": clicks[ch] for ch in range(CHANNELS)},
                                       "sync": syncs}))
    warm = clocks // 4                       # the FIFO fills long before this
    await ClockCycles(dut.clk, warm)
    n0 = len(host.event_times)
    await ClockCycles(dut.clk, clocks - warm - 2000)
    # Rate between the ends of the first and last EVENTS frames in the window (frames arrive
    # whole, so counting at frame ends avoids a frame's worth of error at each edge).
    (t0, b0), (t1, b1) = host.event_times[n0], host.event_times[-1]
    data = bytes(host.events[b0 - b0 % 4:b1 - b1 % 4])
    await play
    records = decode(data)
    seconds = (t1 - t0) * 1e-9
    wire_bytes = host.sink.received
    result = {
        "measured_on": "rtl",
        "clk_hz": clk_hz, "baud": clk_hz // DIVISOR, "samples_per_clock": N,
        "slot_period_bins": slot_period, "frame_slots": frame_slots,
        "offered_clicks_per_s": round(rate * CHANNELS * N * clk_hz),
        "window_s": seconds,
        "events_per_s": round(len(records) / seconds),
        "event_bytes_per_s": round((b1 - b0) / seconds),
        "frames_in_window": len(host.event_times) - 1 - n0,
        "records_per_event": round(records.words / max(len(records), 1), 4),
        "uart_bytes_total": wire_bytes,
        "stream_bytes_total": len(host.events),
        "dropped_gaps_seen": int(len(records.gaps)),
    }
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump(result, out)
    dut._log.info("sustained: %s", result)

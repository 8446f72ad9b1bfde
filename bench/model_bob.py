"""Benchmark of the behavioural Bob (``hil.model.BobBlock``): how fast it tags light, and what its
event FIFO lets through a 12 Mbaud link under overload, next to the RTL's figure.

Light as in ``qkdnode bench tagger`` (the RTL measurement): Poisson clicks at ``--click-rate``
per bin on each of the four channels, 2 samples per clock at 48 MHz, ``--slot-period`` bins a
slot, one sync per ``--frame-slots`` frame, gate open, no dead time; ``--clocks`` of it, handed
to the board in stretches of ``--stretch-frames`` frames (as ``hil.fibre`` does), then
``BobBlock.idle()`` (the light stops, the FIFO drains).

Figures (medians over ``--repeats``; CPU time is ``time.process_time`` of the calling thread's
process):

* ``events_per_cpu_s`` / ``events_per_wall_s``: detection events formed per second of model
  time spent, with the FIFO paced at ``--baud`` (``paced_``) and with an unpaced link
  (``unpaced_``: ``BobBlock(baud=None)``, what the demo uses).
* Under overload (paced): ``offered_events_per_s`` (events formed per simulated second of
  light), ``received_events``, ``dropped_events`` (the counters), ``overflow_records``,
  ``received_events_per_s`` (received per simulated second from the first light until the
  FIFO has drained), ``fraction_of_limit`` (received records per second over the same time,
  of ``bench.tagger.link_limit``), ``reconciled`` (``controller.tagger.reconcile``).

Run ``qkdnode bench model_bob --json``.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

CLK_HZ = 48_000_000
SAMPLES = 2


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench model_bob",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clocks", type=int, default=4_800_000, help="clocks of light (48 MHz)")
    parser.add_argument("--click-rate", type=float, default=0.01,
                        help="offered clicks per bin per channel")
    parser.add_argument("--slot-period", type=int, default=10, help="slot length in bins")
    parser.add_argument("--frame-slots", type=int, default=4000, help="slots per frame")
    parser.add_argument("--stretch-frames", type=int, default=1, help="frames per stretch")
    parser.add_argument("--baud", type=int, default=12_000_000, help="the paced link's baud")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; figures are medians")
    parser.add_argument("--seed", type=int, default=1, help="seed of the light")
    return parser.parse_args(argv)


def _board(args, baud):
    from gateware.spec.registers import REGISTER_MAP, Role
    from hil.model import ModelBoard
    board = ModelBoard(role=Role.BOB, clk_hz=CLK_HZ, bob_options={"samples": SAMPLES, "baud": baud})
    bank = board.bank
    bank.set("tagger.slot_period", args.slot_period)
    bank.set("tagger.frame_slots", args.frame_slots)
    bank.set("tagger.gate", REGISTER_MAP["tagger.gate"].layout.const(
        {"start": 0, "width": args.slot_period}).as_value().value)
    bank.set("tagger.control", 1)
    return board


def _light(args):
    from gateware.spec.tagger import CHANNELS
    rng = np.random.default_rng(args.seed)
    bins = args.clocks * SAMPLES
    clicks = [np.flatnonzero(rng.random(bins) < args.click_rate) for _ in range(CHANNELS)]
    frame_bins = args.frame_slots * args.slot_period
    return clicks, np.arange(0, bins, frame_bins, dtype=np.int64), bins, frame_bins


def _play(args, board, clicks, syncs, bins, frame_bins):
    """Hand the light over in stretches, then idle; return (CPU s, wall s)."""
    step = args.stretch_frames * frame_bins
    c0, t0 = time.process_time(), time.perf_counter()
    for lo in range(0, bins, step):
        hi = min(lo + step, bins)
        part = [c[(c >= lo) & (c < hi)] for c in clicks]
        board.bob.inject(part, syncs[(syncs >= lo) & (syncs < hi)], until=hi)
    board.bob.idle()
    return time.process_time() - c0, time.perf_counter() - t0


def _counters(board):
    from gateware.spec.tagger import CHANNEL_COUNTERS, CHANNELS, GLOBAL_COUNTERS
    bank = board.bank
    out = {name: [bank.get(f"tagger.{name}", ch) for ch in range(CHANNELS)]
           for name in CHANNEL_COUNTERS}
    out.update({name: bank.get(f"tagger.{name}") for name in GLOBAL_COUNTERS})
    return out


def run(argv=None):
    """Run the benchmark with command-line options ``argv``; return the figures."""
    from bench.tagger import link_limit
    from controller.tagger import RecordDecoder, reconcile
    args = _parse(argv or [])
    clicks, syncs, bins, frame_bins = _light(args)
    speed = {"paced": ([], []), "unpaced": ([], [])}
    overload = None
    for _ in range(args.repeats):
        for name, baud in (("paced", args.baud), ("unpaced", None)):
            board = _board(args, baud)
            cpu, wall = _play(args, board, clicks, syncs, bins, frame_bins)
            events = board.bank.get("tagger.events")
            speed[name][0].append(events / cpu)
            speed[name][1].append(events / wall)
            if name == "paced" and overload is None:
                overload = board
    c = _counters(overload)
    words = np.frombuffer(bytes(overload.bob.events.queue), dtype=">u4").astype(np.uint32)
    records = RecordDecoder().decode_words(words)
    light_s = bins / (CLK_HZ * SAMPLES)
    drained_s = (overload.bob.fifo.busy - 0) / (CLK_HZ * SAMPLES)
    limit = link_limit(args.baud)
    out = {}
    for name, (cpu, wall) in speed.items():
        out[f"{name}_events_per_cpu_s"] = round(statistics.median(cpu))
        out[f"{name}_events_per_wall_s"] = round(statistics.median(wall))
    out.update({
        "offered_events_per_s": round(c["events"] / light_s),
        "events": c["events"],
        "received_events": len(records),
        "dropped_events": c["dropped_events"],
        "dropped_markers": c["dropped_markers"],
        "overflow_records": len(records.gaps),
        "received_events_per_s": round(len(records) / drained_s),
        "fraction_of_limit": round(words.size / drained_s / limit["limit_records_per_s"], 4),
        "limit_records_per_s": limit["limit_records_per_s"],
        "reconciled": bool(reconcile(c, records).ok),
        "light_seconds": light_s,
        "repeats": args.repeats,
        "load_average_1min": round(os.getloadavg()[0], 2),
    })
    return out


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:])))

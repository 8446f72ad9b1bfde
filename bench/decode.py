"""Benchmark of the host's tagger record decoder (``controller.tagger.RecordDecoder``).

Figures (medians over ``--repeats``, one core):

* ``records_per_s``: 32-bit records decoded per second, from big-endian EVENTS bytes to the
  numpy arrays (frame, slot, mask, phase) plus markers and gaps, in chunks of ``--chunk`` bytes
  as a link delivers them.
* ``detections_per_s``: the detection rows among them per second.

The stream is the golden model's output (``hil.tagger_model``) for Poisson clicks on four
channels with one frame per sync: detections with a FRAME record per frame and a few markers,
as a tagger sends. Run ``qkdnode bench decode --json`` or ``python -m bench.decode``.
"""

import argparse
import json
import statistics
import time

import numpy as np

from controller.tagger import RecordDecoder
from gateware.spec.tagger import CHANNELS
from hil.tagger_model import TaggerConfig, TaggerModel


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench decode",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000, help="records per repeat (about)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--chunk", type=int, default=1 << 20, help="bytes fed per call")
    parser.add_argument("--seed", type=int, default=1, help="seed of the click trains")
    return parser.parse_args(argv)


def make_stream(records, seed):
    """Return (EVENTS bytes, number of records) of about ``records`` model records."""
    cfg = TaggerConfig(samples=4, slot_period=16, frame_slots=4096, sync_delay=3)
    rng = np.random.default_rng(seed)
    base_bins = 2_000_000
    clicks = [np.unique(rng.integers(0, base_bins, 60_000)) for _ in range(CHANNELS)]
    syncs = np.arange(0, base_bins, cfg.frame_bins)
    words = TaggerModel(cfg).run(clicks, syncs).words
    reps = max(1, records // words.size)
    data = np.tile(words, reps).astype(">u4").tobytes()
    return data, words.size * reps


def run(argv):
    """Run the decoder benchmark with command-line options ``argv``; return the figures."""
    args = _parse(argv)
    data, n = make_stream(args.records, args.seed)
    RecordDecoder().feed(data[:4096])   # compile (numba) outside the timing
    rates, det_rates = [], []
    for _ in range(args.repeats):
        decoder = RecordDecoder()
        t0 = time.perf_counter()
        detections = 0
        for start in range(0, len(data), args.chunk):
            detections += len(decoder.feed(data[start:start + args.chunk]))
        dt = time.perf_counter() - t0
        rates.append(n / dt)
        det_rates.append(detections / dt)
    return {
        "records_per_s": round(statistics.median(rates), 1),
        "detections_per_s": round(statistics.median(det_rates), 1),
        "records": n,
        "chunk_bytes": args.chunk,
        "repeats": args.repeats,
    }


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:])))

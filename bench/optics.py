"""Benchmark of the optics model (hil.optics): how fast it turns slots into clicks.

Figures (one run each, wall-clock, on whatever else the machine is doing):

* ``seconds_for_1e9_slots_25km``: a measured run of ``--slots`` (default 1e9) slots of the
  ``--preset`` link at ``--length-km`` (default gys2005, 25 km), Alice's choices drawn i.i.d. by
  the model where they matter (``OpticsModel.iter_iid``), chunk by chunk with bounded memory.
  The key names the figure only when ``--slots`` is 1e9 and the length 25 km; otherwise the key
  is ``seconds_for_run``.
* ``slots_per_s``: slots of that run per second. ``clicks``, ``clicks_per_slot``: what it made.
* ``explicit_model_slots_per_s``: slots per second through ``OpticsModel.run`` with explicit
  choice arrays (``--explicit-slots``, default 1e8, in chunks of 2**22), model time only;
  ``choice_arrays_slots_per_s``: generating those arrays with numpy (not counted above).
* ``peak_chunk_mb``: memory of one chunk of explicit choice arrays (int8 bit, basis, class).

Run ``qkdnode bench optics --json`` or ``python -m bench.optics``.
"""

import argparse
import json
import time

import numpy as np

CHUNK = 1 << 22


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench optics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gys2005", help="gys2005 or lim2014")
    parser.add_argument("--length-km", type=float, default=25.0, help="fibre length in km")
    parser.add_argument("--slots", type=float, default=1e9, help="slots of the i.i.d. run")
    parser.add_argument("--explicit-slots", type=float, default=1e8,
                        help="slots of the explicit-arrays run (0 skips it)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the model and the choices")
    return parser.parse_args(argv)


def iid_run(preset, length_km, slots, seed):
    """Return (seconds, clicks) of a chunked i.i.d. run of ``slots`` slots."""
    from hil.optics import OpticsModel, preset as make
    model = OpticsModel(make(preset, length_km=length_km), seed=seed, chunk_slots=CHUNK)
    model.run_iid(CHUNK)                    # warm-up: numba and numpy paths compiled and paged in
    model = OpticsModel(make(preset, length_km=length_km), seed=seed, chunk_slots=CHUNK)
    clicks = 0
    t0 = time.perf_counter()
    for part in model.iter_iid(slots):
        clicks += len(part.clicks)
    return time.perf_counter() - t0, clicks


def explicit_run(preset, length_km, slots, seed):
    """Return (model seconds, array-generation seconds) for ``slots`` slots of explicit choices."""
    from hil.optics import OpticsModel, preset as make
    cfg = make(preset, length_km=length_km)
    model = OpticsModel(cfg, seed=seed, chunk_slots=CHUNK)
    rng = np.random.default_rng(seed + 1)
    cdf = np.rint(np.cumsum(cfg.source.class_probabilities) * 256).astype(np.int64)
    cdf[-1] = 256        # 8 random bits pick the class; the last class takes the rounding
    t_model = t_gen = 0.0
    done = 0
    while done < slots:
        n = min(CHUNK, slots - done)
        t0 = time.perf_counter()
        raw = rng.integers(0, 1 << 16, n, dtype=np.uint16)
        bit = (raw & 1).astype(np.int8)
        basis = ((raw >> 1) & 0x7F >= int(cfg.source.p_z * 128)).astype(np.int8)
        cls = np.searchsorted(cdf, (raw >> 8) & 0xFF, side="right").astype(np.int8)
        t1 = time.perf_counter()
        model.run(bit, basis, cls)
        t_model += time.perf_counter() - t1
        t_gen += t1 - t0
        done += n
    return t_model, t_gen


def run(argv):
    """Run the benchmark with command-line ``argv``; return the figures as a dict."""
    args = _parse(argv)
    slots, explicit = int(args.slots), int(args.explicit_slots)
    seconds, clicks = iid_run(args.preset, args.length_km, slots, args.seed)
    key = ("seconds_for_1e9_slots_25km" if slots == 10**9 and args.length_km == 25.0
           else "seconds_for_run")
    out = {"preset": args.preset, "length_km": args.length_km, "slots": slots,
           key: round(seconds, 3), "slots_per_s": round(slots / seconds),
           "clicks": clicks, "clicks_per_slot": clicks / slots}
    if explicit:
        t_model, t_gen = explicit_run(args.preset, args.length_km, explicit, args.seed)
        out.update({"explicit_slots": explicit,
                    "explicit_model_slots_per_s": round(explicit / t_model),
                    "choice_arrays_slots_per_s": round(explicit / t_gen),
                    "peak_chunk_mb": round(3 * CHUNK / 1e6, 1)})
    return out


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:]), indent=2))

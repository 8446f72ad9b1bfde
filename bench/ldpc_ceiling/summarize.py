"""Print the tables of figures/ (written by figures.sh) as markdown rows."""

from __future__ import annotations

import glob
import json
import os
import statistics
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def rows(pattern):
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "figures", pattern))):
        out += [json.loads(line) for line in open(path)]
    return out


def table(pattern, title):
    print(f"\n{title}\n")
    print("| QBER | seed | kernel | mean f | max f | FER | attempts / frame | iterations / frame | "
          "Mbit/s CPU (rounds) | kernel ns / edge-it | kernel CPU share | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for d in rows(pattern):
        groups[(d["qber"], d["seed"], d["kernel"])].append(d)
    for (q, seed, k), ds in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "numba")):
        d = ds[0]
        fails = round(d["frame_error_rate"] * d["frames"])
        print(f"| {q:.2f} | {seed} | {k} | {d['efficiency']:.4f} | {d['efficiency_max']:.4f} | "
              f"{fails}/{d['frames']} | {d['attempts_per_frame']:.2f} | {d['iterations_per_frame']:.1f} | "
              f"{' / '.join('%.2f' % x['mbit_per_s_cpu'] for x in ds)} | "
              f"{' / '.join('%.3f' % x['ns_per_edge_iteration'] for x in ds)} | "
              f"{statistics.median(x['decode_cpu_share'] for x in ds):.2f} | "
              f"{ds[0]['load_average'][0]}-{ds[-1]['load_average'][1]} |")


if __name__ == "__main__":
    table("blind_*.jsonl", "Blind protocol (defaults)")
    table("single_0*.jsonl", "Single attempts at f 1.10 (default stopping rules)")
    table("single_nostop_*.jsonl", "Single attempts at f 1.10, stall 100, no trend window")
    for path in sorted(glob.glob(os.path.join(HERE, "figures", "k*.txt"))):
        print(f"\n{os.path.basename(path)}:\n" + open(path).read())
    print(open(os.path.join(HERE, "figures", "load.txt")).read())

"""Benchmark of the RTL twin (``hil.twin``): how many clock cycles of our gateware Verilator and
cocotb simulate per wall-clock second, seen from the host over the twin's TCP link.

Figures (medians over ``--repeats``):

* ``cycles_per_s``: simulated 48 MHz clock cycles per wall second while the host streams
  ``--bytes`` through the LOOPBACK channel and back (the UART busy both ways), read from the
  gateware's own ``core.cycles`` register before and after.
* ``realtime_ratio``: ``cycles_per_s / 48e6``, the fraction of real time the twin keeps.
* ``stream_bytes_per_s``: loopback payload bytes per wall second through the twin.

The first run builds the Verilator model (about a minute); later runs reuse the cache.
Run ``qkdnode bench twin --json``.
"""

import argparse
import json
import os
import statistics
import time

from controller.device import Device
from gateware.spec.protocol import StreamChannel
from gateware.spec.registers import Role
from hil.twin import CLK_HZ, Twin


def run(argv=None):
    """Start a LINK twin, stream through it, return the figures."""
    parser = argparse.ArgumentParser(prog="qkdnode bench twin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=4096, help="loopback bytes per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; figures are medians")
    parser.add_argument("--seed", type=int, default=1, help="seed of the stream data")
    args = parser.parse_args(argv)
    import random
    rng = random.Random(args.seed)
    rates, stream_rates = [], []
    with Twin(Role.LINK) as twin, Device(twin.url, timeout=5.0) as dev:
        dev.write("core.control", loopback=1)
        for _ in range(args.repeats):
            data = rng.randbytes(args.bytes)
            c0, t0 = dev.read("core.cycles"), time.perf_counter()
            dev.link.stream_write(StreamChannel.LOOPBACK.value, data)
            echoed = dev.link.stream_read(StreamChannel.LOOPBACK.value, len(data), timeout=600)
            c1, t1 = dev.read("core.cycles"), time.perf_counter()
            if echoed != data:
                raise RuntimeError("the twin's loopback data differs; the benchmark is void")
            cycles = (c1 - c0) % (1 << 32)
            rates.append(cycles / (t1 - t0))
            stream_rates.append(len(data) / (t1 - t0))
    cycles_per_s = statistics.median(rates)
    return {
        "cycles_per_s": round(cycles_per_s),
        "realtime_ratio": round(cycles_per_s / CLK_HZ, 6),
        "stream_bytes_per_s": round(statistics.median(stream_rates)),
        "bytes_per_repeat": args.bytes,
        "repeats": args.repeats,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print(json.dumps(run()))

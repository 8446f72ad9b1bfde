"""``qkdnode demo``: the project's main job, end to end on this machine.

Today it exercises the control path (issue 2): it serves the behavioural board on a loopback TCP
port (or uses the board at ``url``), identifies it, checks register access, streams data through
the LOOPBACK channel and back, and reconciles the link counters with what the host saw. Later
issues grow it into the full two-node key distribution demo.
"""

import os
import time
from dataclasses import dataclass, field

from controller.device import Device
from gateware.spec.protocol import StreamChannel

__all__ = ["DemoReport", "run_demo"]


@dataclass
class DemoReport:
    """What the demo did and measured; ``ok`` is False if any check failed."""
    url: str
    info: dict = field(default_factory=dict)
    register_checks: int = 0
    register_seconds_median: float = 0.0
    stream_bytes: int = 0
    stream_seconds: float = 0.0
    counters: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures


def run_demo(url=None, *, stream_bytes=65536, register_checks=64, seed=None, progress=print):
    """Run the demo against ``url`` (None: a behavioural board served here) and return a report.

    ``seed`` makes the data reproducible (default: random, printed). ``progress`` gets one line
    per step.
    """
    server = None
    if url is None:
        from hil.model import ModelServer
        server = ModelServer()
        server.start()
        url = server.url
        progress(f"behavioural board serving on {url}")
    seed = int.from_bytes(os.urandom(4), "big") if seed is None else seed
    import random
    rng = random.Random(seed)
    progress(f"seed {seed}")
    report = DemoReport(url)
    try:
        with Device(url) as dev:
            report.info = dev.info()
            progress(f"identified: {report.info}")
            dev.write("core.command", clear_counters=1)

            times = []
            for _ in range(register_checks):
                value = rng.getrandbits(32)
                start = time.perf_counter()
                dev.write("core.scratch", value)
                got = dev.read("core.scratch")
                times.append(time.perf_counter() - start)
                if got != value:
                    report.failures.append(f"scratch: wrote {value:#010x}, read {got:#010x}")
            times.sort()
            report.register_checks = register_checks
            report.register_seconds_median = times[len(times) // 2]
            progress(f"{register_checks} scratch write/read pairs, median "
                     f"{report.register_seconds_median * 1e3:.2f} ms a pair")

            dev.write("core.control", loopback=1)
            data = rng.randbytes(stream_bytes)
            start = time.perf_counter()
            dev.link.stream_write(StreamChannel.LOOPBACK.value, data)
            echoed = dev.link.stream_read(StreamChannel.LOOPBACK.value, len(data), timeout=10.0)
            report.stream_seconds = time.perf_counter() - start
            report.stream_bytes = len(echoed)
            if echoed != data:
                report.failures.append(f"loopback: sent {len(data)} bytes, {len(echoed)} came back"
                                       + ("" if len(echoed) != len(data) else ", with differences"))
            progress(f"loopback stream: {len(echoed)} of {len(data)} bytes back in "
                     f"{report.stream_seconds:.3f} s")
            dev.write("core.control", loopback=0)

            report.counters = dev.read_block("link")
            for name in ("crc_errors", "cobs_errors", "uart_errors", "bad_requests"):
                if report.counters[f"link.{name}"]:
                    report.failures.append(f"link.{name} = {report.counters[f'link.{name}']}")
            if dev.link.crc_errors or dev.link.cobs_errors:
                report.failures.append(f"host saw {dev.link.crc_errors} CRC and "
                                       f"{dev.link.cobs_errors} COBS errors")
            progress(f"link counters: {report.counters}")
    finally:
        if server is not None:
            server.stop()
    return report

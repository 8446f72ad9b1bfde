"""Benchmark of the gateware link itself: a sustained LOOPBACK stream through the link top's
UART pins (12 Mbaud from 48 MHz) on Verilator, measuring what the gateware puts on its TX pin.

Figures:

* ``rtl_payload_bytes_per_tx_byte``: stream data bytes returned per byte the gateware sent
  (device-to-host stream frames plus the STREAM_H2D replies that share the TX line).
* ``rtl_tx_line_utilisation``: bytes sent / UART byte-times elapsed from the first to the last
  byte sent: 1.0 means the gateware never left the TX line idle mid-stream.
* ``rtl_link_efficiency``: stream data bits per UART bit-time over that span (8N1), the figure to
  compare with ``link_efficiency`` of ``bench/link.py`` (the framing arithmetic alone).
* ``rtl_payload_mbit_per_s_at_12mbaud``: the stream data rate that gives at 12 Mbaud.

The first run builds the Verilator model (about a minute); later runs reuse ``.cache/verilator``.
Run ``qkdnode bench link_rtl --json``.
"""

import argparse
import json
import tempfile
from pathlib import Path

from gateware import rtlsim
from gateware.spec.protocol import UART_BITS_PER_BYTE
from gateware.top import NodeTop

BAUD = 12_000_000
HERE = Path(__file__).resolve().parent


def run(argv=None):
    """Build (or reuse) the link top, stream through it, return the figures."""
    parser = argparse.ArgumentParser(prog="qkdnode bench link_rtl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=32, help="full STREAM_H2D frames looped back")
    parser.add_argument("--seed", type=int, default=1, help="seed of the stream data")
    parser.add_argument("--loopback-depth", type=int, default=2048,
                        help="LOOPBACK FIFO depth in bytes; deep enough that the host's credit "
                             "never starves the RX line, so the TX line shows the gateware's pace")
    args = parser.parse_args(argv)
    top = NodeTop(clk_hz=48_000_000, baud=BAUD, git_hash=0x1234ABCD, flush_cycles=64,
                  loopback_depth=args.loopback_depth)
    build_dir = rtlsim.build("node_top", rtlsim.verilog(top, "node_top"))
    with tempfile.TemporaryDirectory(prefix="link_rtl_") as tmp:
        out = Path(tmp) / "result.json"
        rtlsim.run("node_top", build_dir, HERE / "cocotb_link_rate.py", test_dir=Path(tmp) / "run",
                   seed=args.seed, extra_env={"UART_DIVISOR": str(top.divisor),
                                              "LINK_RATE_FRAMES": str(args.frames),
                                              "LINK_RATE_OUT": str(out),
                                              "LOOPBACK_DEPTH": str(args.loopback_depth)})
        raw = json.loads(out.read_text())
    efficiency = raw["payload_bytes"] / raw["tx_byte_times"] * 8 / UART_BITS_PER_BYTE
    return {
        "rtl_payload_bytes": raw["payload_bytes"],
        "rtl_tx_bytes": raw["tx_bytes"],
        "rtl_payload_bytes_per_tx_byte": round(raw["payload_bytes"] / raw["tx_bytes"], 6),
        "rtl_tx_line_utilisation": round(raw["tx_bytes"] / raw["tx_byte_times"], 6),
        "rtl_link_efficiency": round(efficiency, 6),
        "rtl_payload_mbit_per_s_at_12mbaud": round(efficiency * BAUD / 1e6, 4),
    }


if __name__ == "__main__":
    print(json.dumps(run()))

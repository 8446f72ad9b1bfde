"""The RTL twin: our own gateware in Verilator under cocotb, its UART bridged to a TCP socket.

``Twin(role=...)`` builds (or reuses) the Verilator model of ``gateware.top.NodeTop`` and runs it
in a subprocess; the controller reaches it as ``socket://127.0.0.1:PORT`` exactly as it reaches
a board on a serial port. ``python -m hil.twin --role link --port 4000`` serves one until stopped.

Bob's twin (``Twin(Role.BOB, clicks=True)``) also listens on a second loopback socket for the
light: ``twin.clicks`` (a ``TwinClicks``) sends it stretches of click and sync times in bins
(``hil.fibre.Stretch``), which the simulation drives onto the detector and sync pins with the
detector BFM, waiting between changes with one timer each (no Python per idle clock). Wire
format, host to twin, per stretch: ``>4sIQ`` (b"STR1", event count n, gap in bins), then n
int64 bins (big-endian) and n input bytes (0-3 detector channel, 4 sync). Twin to host, once a
stretch and its gap have been played, and every 20 000 clock cycles: ``>QQ`` (stretches played,
clock cycle reached). ``free_run``: keep simulating while the clicks socket is connected, so a
realtime testbed can clock Alice from the twin's time (``TwinClicks.seconds``).
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateware.spec.registers import Role

__all__ = ["Twin", "TwinClicks", "build_twin"]

HERE = Path(__file__).resolve().parent
CLK_HZ = 48_000_000
BAUD = 12_000_000


#: Bob's samples per clock in the twin (as on iCE40 DDR inputs, and the behavioural model's).
BOB_SAMPLES = 2
#: Input numbers on the clicks socket.
SYNC_INPUT = 4
_STRETCH = struct.Struct(">4sIQ")
_ACK = struct.Struct(">QQ")


def build_twin(role=Role.LINK, samples=BOB_SAMPLES):
    """Build (or reuse from the cache) the Verilator model of the ``role`` image; return
    ``(top_name, build_dir, divisor)``. ``samples``: Bob's samples per clock (BOB only)."""
    from gateware import rtlsim
    from gateware.top import NodeTop
    extra = {"samples": samples} if role == Role.BOB else {}
    top = NodeTop(clk_hz=CLK_HZ, baud=BAUD, role=role, git_hash=0, **extra)
    name = f"twin_{role.name.lower()}" + (f"_s{samples}" if role == Role.BOB else "")
    return name, rtlsim.build(name, rtlsim.verilog(top, name)), top.divisor


def _serve(role, port, port_file, samples=BOB_SAMPLES, clicks=False, free_run=False):
    from gateware import rtlsim
    name, build_dir, divisor = build_twin(role, samples)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    rtlsim.run(name, build_dir, HERE / "twin_cocotb.py", test_dir=run_dir, seed=1,
               extra_env={"UART_DIVISOR": str(divisor), "TWIN_PORT": str(port),
                          "TWIN_PORT_FILE": str(port_file or ""),
                          "TWIN_CLICKS": "1" if clicks else "", "TWIN_SAMPLES": str(samples),
                          # the clock runs in C (no Python per edge); cocotb supports that
                          # only with writes applied as the simulator applies them
                          "COCOTB_TRUST_INERTIAL_WRITES": "1",
                          "TWIN_FREE_RUN": "1" if free_run else "",
                          "TWIN_CLK_PERIOD_PS": str(2 * round(0.5e12 / CLK_HZ))})


class TwinClicks:
    """The host end of a Bob twin's clicks socket: ``deliver(stretch)`` sends one
    (``hil.fibre.Stretch``), ``wait()`` blocks until the twin has played every stretch sent.

    ``gap_bins``: idle bins the twin leaves between stretches, more than a frame, so each
    stretch is one tagger run as on the behavioural model (``hil.fibre``).
    """

    def __init__(self, port, *, gap_bins, timeout=600.0):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gap_bins = int(gap_bins)
        self.timeout = timeout
        self.sent = 0
        self.played = 0
        self.clock = 0
        self._rx = b""
        self._lock = threading.Lock()     # Alice's clock reads it from her board's thread

    def deliver(self, stretch):
        """Send one stretch of clicks (per channel) and syncs, times in bins."""
        import numpy as np
        times = [np.asarray(c, dtype=np.int64) for c in stretch.clicks]
        inputs = [np.full(t.size, ch, np.uint8) for ch, t in enumerate(times)]
        times.append(np.asarray(stretch.syncs, dtype=np.int64))
        inputs.append(np.full(times[-1].size, SYNC_INPUT, np.uint8))
        t, i = np.concatenate(times), np.concatenate(inputs)
        self.sock.sendall(_STRETCH.pack(b"STR1", t.size, self.gap_bins)
                          + t.astype(">i8").tobytes() + i.tobytes())
        self.sent += 1

    def _read_acks(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        with self._lock:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:
                raise RuntimeError("the RTL twin closed its clicks socket (did the simulation "
                                   "end?)")
            self._rx += data
            while len(self._rx) >= _ACK.size:
                self.played, self.clock = _ACK.unpack_from(self._rx)
                self._rx = self._rx[_ACK.size:]

    def check(self):
        """Collect any acknowledgements without waiting."""
        self._read_acks(0)

    def seconds(self, clk_hz=CLK_HZ):
        """Return the twin's simulated time, in seconds, as last reported."""
        self.check()
        return self.clock / clk_hz

    def wait(self):
        """Block until the twin has played every stretch sent (gap included)."""
        deadline = time.monotonic() + self.timeout
        while self.played < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the RTL twin played {self.played} of {self.sent} stretches "
                                   f"within {self.timeout} s")
            self._read_acks(0.05)

    def close(self):
        """Close the socket."""
        self.sock.close()


class Twin:
    """A running RTL twin of role ``role`` on 127.0.0.1 (``port`` 0: a free one).

    Use as a context manager; ``url`` is the link URL. ``start_timeout`` covers the first
    Verilator build (about a minute on two cores), later starts reuse the cache.
    """

    def __init__(self, role=Role.LINK, port=0, *, start_timeout=600.0, samples=BOB_SAMPLES,
                 clicks=False, gap_bins=None, free_run=False):
        self.role = Role(role) if not isinstance(role, Role) else role
        self.port = port
        self.start_timeout = start_timeout
        self.samples = samples
        self.with_clicks = clicks
        self.gap_bins = gap_bins if gap_bins is not None else 1 << 18
        self.clicks = None
        self.free_run = free_run
        self._proc = None

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def start(self):
        """Start the simulation and wait until it listens; raise RuntimeError if it does not."""
        build_twin(self.role, self.samples)  # build here, so a build error surfaces here
        tmp = Path(tempfile.mkdtemp(prefix="twin_"))
        port_file = tmp / "port"
        self._log = open(tmp / "twin.log", "w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hil.twin", "--role", self.role.name.lower(),
             "--port", str(self.port), "--port-file", str(port_file),
             "--samples", str(self.samples)] + (["--clicks"] if self.with_clicks else [])
            + (["--free-run"] if self.free_run else []),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(HERE.parent))
        deadline = time.monotonic() + self.start_timeout
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                tail = self._log.read()[-3000:]
                self.stop()
                raise RuntimeError(f"the RTL twin ({self.role.name}) did not start; its log:\n{tail}")
            time.sleep(0.05)
        ports = port_file.read_text().split()
        self.port = int(ports[0])
        if self.with_clicks:
            self.clicks = TwinClicks(int(ports[1]), gap_bins=self.gap_bins)
        return self

    def stop(self):
        """Stop the simulation (the whole process group: runner and simulator)."""
        if self.clicks is not None:
            self.clicks.close()
            self.clicks = None
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hil.twin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=[r.name.lower() for r in Role], default="link")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--port-file", help="write the port (and the clicks port) here once listening")
    parser.add_argument("--samples", type=int, default=BOB_SAMPLES, help="Bob's samples per clock")
    parser.add_argument("--clicks", action="store_true", help="Bob: take clicks on a second socket")
    parser.add_argument("--free-run", action="store_true",
                        help="keep simulating while a clicks client is connected")
    args = parser.parse_args(argv)
    _serve(Role[args.role.upper()], args.port, args.port_file, args.samples, args.clicks,
           args.free_run)


if __name__ == "__main__":
    main()

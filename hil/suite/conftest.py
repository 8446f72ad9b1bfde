"""Options and fixtures of the HIL suite (``pytest hil/suite --target hw|rtl|model``).

``--target hw`` needs ``--alice-url``, ``--bob-url`` and a bench file (``--bench``, TOML or JSON,
with the instruments' VISA resources); without them every test is skipped, never faked.
"""

import os
from pathlib import Path

import pytest

from hil.suite.bench import HilBench, load_bench_file

TARGETS = ("model", "rtl", "hw")
REPO = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    group = parser.getgroup("hil", "qkdnode HIL suite")
    group.addoption("--target", choices=TARGETS, default="model",
                    help="what to test: hw (real boards), rtl (Verilator twin), model (default)")
    group.addoption("--alice-url", default=None, help="hw: Alice's link URL, e.g. /dev/ttyUSB1")
    group.addoption("--bob-url", default=None, help="hw: Bob's link URL")
    group.addoption("--bench", default=None,
                    help="hw: bench file (TOML/JSON) with [visa] resources and [timing]")
    group.addoption("--results", default=str(REPO / "results" / "hil"),
                    help="folder for plots and JSON results (default results/hil)")
    group.addoption("--hil-seed", type=int, default=20261127,
                    help="seed of Alice's choices and the optics model (model, rtl)")
    group.addoption("--long", action="store_true",
                    help="also run the tests marked long on --target rtl")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: long runs; on --target rtl only with --long")
    config.addinivalue_line("markers", "simulated: needs the known physics of model/rtl")


def pytest_collection_modifyitems(config, items):
    target = config.getoption("--target")
    skip_long = pytest.mark.skip(reason="long test: run on --target rtl with --long")
    skip_sim = pytest.mark.skip(reason="checks against the simulated physics: model/rtl only")
    for item in items:
        if target == "rtl" and "long" in item.keywords and not config.getoption("--long"):
            item.add_marker(skip_long)
        if target == "hw" and "simulated" in item.keywords:
            item.add_marker(skip_sim)


def pytest_report_header(config):
    return f"qkdnode HIL target: {config.getoption('--target')}, seed {config.getoption('--hil-seed')}"


@pytest.fixture(scope="session")
def target(request):
    return request.config.getoption("--target")


@pytest.fixture(scope="session")
def seed(request):
    return request.config.getoption("--hil-seed")


@pytest.fixture(scope="session")
def results_dir(request, target):
    path = Path(request.config.getoption("--results")) / target
    path.mkdir(parents=True, exist_ok=True)
    return path


def _hw_options(config):
    alice = config.getoption("--alice-url") or os.environ.get("QKDNODE_ALICE_URL")
    bob = config.getoption("--bob-url") or os.environ.get("QKDNODE_BOB_URL")
    bench = config.getoption("--bench") or os.environ.get("QKDNODE_BENCH")
    missing = [name for name, value in (("--alice-url", alice), ("--bob-url", bob),
                                        ("--bench", bench)) if not value]
    if missing:
        pytest.skip(f"--target hw needs {', '.join(missing)}: no hardware, test skipped")
    options = load_bench_file(bench)
    if "voa" not in options.get("visa", {}):
        pytest.skip(f"bench file {bench} names no [visa] voa resource")
    options.update(alice_url=alice, bob_url=bob)
    return options


@pytest.fixture(scope="session")
def bench(request, target, seed):
    """The HilBench of the target (started once per session)."""
    options = _hw_options(request.config) if target == "hw" else {}
    hb = HilBench(target, seed=seed, options=options).start()
    yield hb
    hb.stop()


@pytest.fixture
def fresh(bench):
    """The bench with the VOA at 0 dB and Bob configured for the time base, after the test too."""
    bench.set_attenuation(0.0)
    bench.configure_bob()
    yield bench
    bench.set_attenuation(0.0)
    bench.configure_bob()

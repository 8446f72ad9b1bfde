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


#: Bob's tagger per source of his phase histograms (``Tagger.hist_source``): the gateware's
#: default (hardware histograms) and the iCEBreaker's (none: built from the records).
BOB_TAGGERS = {"hardware": None, "records": "icebreaker"}


@pytest.fixture(scope="session")
def benches(request, target, seed):
    """``get(hist_source=None)``: the HilBench of the target, started on first use, once per
    session; with ``hist_source`` (``BOB_TAGGERS``), one whose Bob's phase histograms come
    from there. Only a model Bob is built to order: on rtl (the twin has hardware
    histograms) and hw (the boards are what they are) another source is skipped."""
    started = {}

    def get(hist_source=None):
        key = "hw" if target == "hw" else hist_source or "hardware"
        if key not in started:
            options = _hw_options(request.config) if target == "hw" else {}
            board = BOB_TAGGERS.get(key)
            if board is not None and target == "rtl":
                pytest.skip(f"Bob's RTL twin is built with the default TaggerParams: no "
                            f"{hist_source!r} histograms")
            if board is not None:
                from boards import get_board
                options["bob_tagger"] = get_board(board).tagger
            started[key] = HilBench(target, seed=seed, options=options).start()
        hb = started[key]
        if hist_source is not None and hb.tagger.hist_source != hist_source:
            pytest.skip(f"Bob's board has {hb.tagger.hist_source!r} histograms, not "
                        f"{hist_source!r}")
        return hb

    yield get
    for hb in started.values():
        hb.stop()


@pytest.fixture(scope="session")
def bench(benches):
    """The HilBench of the target (started once per session)."""
    return benches()


def _fresh(bench):
    bench.set_attenuation(0.0)
    bench.configure_bob()
    yield bench
    bench.set_attenuation(0.0)
    bench.configure_bob()


@pytest.fixture
def fresh(bench):
    """The bench with the VOA at 0 dB and Bob configured for the time base, after the test too."""
    yield from _fresh(bench)


@pytest.fixture(params=list(BOB_TAGGERS))
def fresh_hist(request, benches):
    """``fresh`` over Bob's phase-histogram sources (``BOB_TAGGERS``): a Bob with hardware
    histograms and one without (the host builds them from the records)."""
    yield from _fresh(benches(request.param))

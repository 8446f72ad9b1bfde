"""The node drives its bench instruments: settings on start, readings as metrics, clear failures.

The instruments are ``hil.scpi.SimulatedBench``: SCPI over real TCP sockets, reached through
the project's pyvisa drivers with the ``@py`` backend, as on a real bench.
"""

import socket

import pytest

from controller.config import ConfigError, InstrumentsConfig, parse_config
from controller.metrics import Metrics
from controller.node.instruments import BenchInstruments, InstrumentFault
from hil.scpi import SimulatedBench

from .relay import Relay


@pytest.fixture
def bench():
    with SimulatedBench(detector_tau_s=0.01) as b:
        yield b


def _resources(bench):
    r = bench.resources
    return {"attenuator": r["voa"], "powermeter": r["powermeter"], "laser": r["laser"],
            "detector": r["detector"]}


def test_settings_applied_and_readings_exported(bench):
    metrics = Metrics("alice")
    cfg = InstrumentsConfig(_resources(bench), attenuation_db=7.5, wavelength_nm=1550.0,
                            detector_setpoint_c=-40.0, detector_efficiency_percent=15,
                            max_detector_temperature_c=-30.0, poll_s=0.05)
    bench.laser.output_enabled = True              # 0 dBm into the VOA
    inst = BenchInstruments(cfg, metrics, "alice").open()
    try:
        assert bench.voa.attenuation_db == pytest.approx(7.5)          # set over SCPI/TCP
        assert bench.detector.setpoint_c == pytest.approx(-40.0) and bench.detector.tec_enabled
        assert bench.detector.efficiency_percent == 15
        sample = lambda name, **lbl: metrics.registry.get_sample_value(  # noqa: E731
            f"qkd_{name}", {"node": "alice", **lbl})
        assert sample("voa_attenuation_db") == pytest.approx(7.5)
        laser_dbm = bench.laser.power_dbm
        assert sample("optical_power_dbm") == pytest.approx(laser_dbm - 7.5, abs=0.01)
        for kind in ("attenuator", "powermeter", "laser", "detector"):
            assert sample("instrument_up", instrument=kind) == 1
        assert sample("detector_tec_enabled") == 1
        inst.start()                               # the detector cools with tau 10 ms
        bench.voa.attenuation_db = 12.0            # changed behind the node's back: seen
        for _ in range(200):
            inst._stop.wait(0.05)
            if sample("voa_attenuation_db") == pytest.approx(12.0) and \
                    sample("detector_temperature_celsius") < -30.0:
                break
        assert sample("voa_attenuation_db") == pytest.approx(12.0)
        assert sample("detector_temperature_celsius") < -30.0
        assert sample("instrument_alarm", kind="detector_temperature") == 0
    finally:
        inst.close()


def test_detector_too_warm_raises_an_instrument_alarm(bench):
    metrics = Metrics("bob")
    cfg = InstrumentsConfig({"detector": bench.resources["detector"]},
                            max_detector_temperature_c=-30.0)      # TEC off: ambient 25 degC
    inst = BenchInstruments(cfg, metrics, "bob").open()
    try:
        assert inst.alarms["detector_temperature"] == 1
        assert metrics.registry.get_sample_value(
            "qkd_instrument_alarm", {"node": "bob", "kind": "detector_temperature"}) == 1
    finally:
        inst.close()


def test_an_instrument_that_does_not_answer_stops_the_start(bench):
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"TCPIP::127.0.0.1::{s.getsockname()[1]}::SOCKET"
    cfg = InstrumentsConfig({"attenuator": bench.resources["voa"], "powermeter": dead},
                            timeout_ms=500)
    with pytest.raises(InstrumentFault, match=r"\[instruments\] powermeter at .* does not answer"):
        BenchInstruments(cfg).open()


def test_instrument_going_silent_is_marked_down_not_fatal(bench):
    metrics = Metrics("alice")
    relay = Relay(("127.0.0.1", bench.servers["voa"].port))
    cfg = InstrumentsConfig({"attenuator": f"TCPIP::127.0.0.1::{relay.address[1]}::SOCKET"},
                            timeout_ms=300)
    inst = BenchInstruments(cfg, metrics, "alice").open()
    try:
        assert inst.up["attenuator"] is True
        relay.cut()
        inst.poll()
        assert inst.up["attenuator"] is False
        assert metrics.registry.get_sample_value(
            "qkd_instrument_up", {"node": "alice", "instrument": "attenuator"}) == 0
    finally:
        inst.close()


def _config(instruments: str) -> str:
    return f"""
[node]
role = "alice"
[board]
url = "socket://127.0.0.1:1"
[peer]
listen = "127.0.0.1:0"
psk = "psk"
[protocol]
block_slots = 100000
[instruments]
{instruments}
"""


def test_instruments_section_checked(tmp_path):
    import tomllib
    (tmp_path / "psk").write_bytes(b"x")
    good = parse_config(tomllib.loads(_config('attenuator = "TCPIP::10.0.0.5::5025::SOCKET"\n'
                                              'attenuation_db = 3.0')), tmp_path / "node.toml")
    assert good.instruments.resources == {"attenuator": "TCPIP::10.0.0.5::5025::SOCKET"}
    assert good.instruments.attenuation_db == 3.0
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(_config('voa = "TCPIP::10.0.0.5::5025::SOCKET"\n'
                                           'attenuator = "10.0.0.5"\n'
                                           'detector_setpoint_c = -40.0')), tmp_path / "node.toml")
    text = str(err.value)
    assert "[instruments] voa" in text and "unknown key" in text
    assert "[instruments] attenuator" in text and "VISA resource" in text
    assert "[instruments] detector_setpoint_c" in text and "needs the detector" in text

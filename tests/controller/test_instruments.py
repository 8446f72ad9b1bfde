"""Instrument drivers: byte-exact SCPI on the wire, replies parsed, ranges checked before sending.

Two back ends: the simulated instruments of ``hil.scpi`` on real TCP sockets through pyvisa-py
(``@py``; the server records every byte it received), and the pyvisa-sim definitions in
``controller/instruments/sim/instruments.yaml`` (``@sim``; they answer only exact strings).
"""

import math
import time

import pytest

from controller.instruments import (InstrumentError, LaserSource, PhotonDetector, PowerMeter,
                                    VariableAttenuator)
from controller.instruments.sim import SIM_BACKEND, SIM_RESOURCES
from hil.scpi import ScpiServer, SimulatedBench, SimulatedDetector, SimulatedVOA

DRIVERS = {"voa": VariableAttenuator, "powermeter": PowerMeter, "laser": LaserSource,
           "detector": PhotonDetector}

# (instrument, property, value to set or None to read, exact bytes sent, value read back)
CASES = [
    ("voa", "attenuation_db", 12.345, b"INP:ATT 12.345\n", 12.345),
    ("voa", "attenuation_db", None, b"INP:ATT?\n", 0.0),
    ("voa", "wavelength_nm", 1310, b"INP:WAV 1310.000NM\n", 1310.0),
    ("voa", "wavelength_nm", None, b"INP:WAV?\n", 1550.0),
    ("voa", "output_enabled", False, b"OUTP:STAT 0\n", False),
    ("voa", "output_enabled", None, b"OUTP:STAT?\n", True),
    ("powermeter", "wavelength_nm", 1310.5, b"SENS:CORR:WAV 1310.5\n", 1310.5),
    ("powermeter", "averaging", 100, b"SENS:AVER:COUN 100\n", 100),
    ("powermeter", "averaging", None, b"SENS:AVER:COUN?\n", 1),
    ("powermeter", "power_w", None, b"MEAS:POW?\n", None),
    ("laser", "wavelength_nm", 1550.12, b"SOUR0:WAV 1550.1200NM\n", 1550.12),
    ("laser", "power_dbm", -3.5, b"SOUR0:POW -3.500DBM\n", -3.5),
    ("laser", "power_dbm", None, b"SOUR0:POW:UNIT?\nSOUR0:POW?\n", 0.0),
    ("laser", "power_unit", "W", b"SOUR0:POW:UNIT 1\n", "W"),
    ("laser", "output_enabled", True, b"SOUR0:POW:STAT 1\n", True),
    ("detector", "temperature_setpoint_c", -45.5, b"SOUR:TEMP -45.50\n", -45.5),
    ("detector", "tec_enabled", True, b"OUTP:STAT 1\n", True),
    ("detector", "efficiency_percent", 20, b"DET:EFF 20\n", 20),
    ("detector", "dead_time_us", 12.5, b"DET:DEAD 12.500\n", 12.5),
    ("detector", "gate_mode", "free", b"DET:GATE:MODE FREE\n", "free"),
    ("detector", "gate_mode", None, b"DET:GATE:MODE?\n", "gated"),
    ("detector", "gate_width_ns", 1.25, b"DET:GATE:WIDT 1.25\n", 1.25),
    ("detector", "count_rate_hz", None, b"DET:COUN?\n", None),
    ("detector", "temperature_c", None, b"MEAS:TEMP?\n", None),
]

# (instrument, property, out-of-range or wrong-kind value)
BAD = [
    ("voa", "attenuation_db", 60.5), ("voa", "attenuation_db", -0.1), ("voa", "wavelength_nm", 1100),
    ("voa", "output_enabled", 1), ("voa", "attenuation_db", "10"),
    ("powermeter", "wavelength_nm", 1800), ("powermeter", "averaging", 0),
    ("powermeter", "averaging", 2.5),
    ("laser", "wavelength_nm", 1300), ("laser", "power_dbm", 10.5), ("laser", "power_unit", "mW"),
    ("detector", "temperature_setpoint_c", 35), ("detector", "efficiency_percent", 12),
    ("detector", "dead_time_us", 0.05), ("detector", "gate_mode", "GATED"),
    ("detector", "gate_width_ns", 30),
]


def case_id(case):
    return f"{case[0]}.{case[1]}={'get' if case[2] is None else case[2]}"


@pytest.fixture
def bench():
    """The simulated bench on 127.0.0.1; its servers stop when the test ends."""
    with SimulatedBench(detector_tau_s=0) as b:
        yield b


@pytest.fixture
def tcp_driver(bench):
    """Return a function opening a driver on a bench server through pyvisa-py; closes them all."""
    opened = []

    def open_(name):
        drv = DRIVERS[name](bench.resources[name], "@py", timeout_ms=2000)
        opened.append(drv)
        return drv

    yield open_
    for drv in opened:
        drv.close()


def wait_for_bytes(server, count, timeout_s=2.0):
    """Wait until the server has received ``count`` bytes (sets are not acknowledged)."""
    deadline = time.monotonic() + timeout_s
    while len(server.received) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    return bytes(server.received)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bytes_on_the_wire(case, bench, tcp_driver):
    name, prop, value, wire, readback = case
    drv = tcp_driver(name)
    server = bench.servers[name]
    server.received.clear()
    if value is None:
        got = getattr(drv, prop)
        assert bytes(server.received) == wire
        if readback is not None:
            assert got == pytest.approx(readback) if isinstance(readback, float) else got == readback
    else:
        setattr(drv, prop, value)
        assert wait_for_bytes(server, len(wire)) == wire
        drv.wait()
        server.received.clear()
        assert getattr(drv, prop) == (pytest.approx(readback) if isinstance(readback, float)
                                      else readback)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_pyvisa_sim_definitions(case):
    name, prop, value, _, readback = case
    drv = DRIVERS[name](SIM_RESOURCES[name], SIM_BACKEND)
    try:
        if value is not None:
            setattr(drv, prop, value)
        got = getattr(drv, prop)
        if value is not None:
            assert got == (pytest.approx(readback) if isinstance(readback, float) else readback)
        else:      # pyvisa-sim keeps its state for the whole process: check the kind of reply
            kind = type(readback) if readback is not None else float
            assert isinstance(got, kind) and (kind is not float or math.isfinite(got))
        drv.check_errors()
        assert drv.id.split(",")[3] == "qkdnode-sim"
    finally:
        drv.close()


@pytest.mark.parametrize("case", BAD, ids=lambda c: f"{c[0]}.{c[1]}={c[2]!r}")
def test_out_of_range_raises_before_sending(case, bench, tcp_driver):
    name, prop, bad = case
    drv = tcp_driver(name)
    server = bench.servers[name]
    server.received.clear()
    with pytest.raises(ValueError, match=rf"{type(drv).__name__}\.{prop}: .*nothing was sent"):
        setattr(drv, prop, bad)
    drv.wait()
    assert bytes(server.received) == b"*OPC?\n"


def test_read_only_and_bad_reply(bench, tcp_driver):
    pm = tcp_driver("powermeter")
    with pytest.raises(AttributeError, match="measurement"):
        pm.power_w = 1.0
    voa = tcp_driver("voa")
    voa.write("INP:ATTENUATION 70")           # the simulator refuses it and queues -222
    with pytest.raises(InstrumentError, match="-222"):
        voa.check_errors()
    voa.check_errors()                        # the queue is empty again


# -- the simulated bench end to end ---------------------------------------------------------------

def test_voa_drives_the_optics_model_and_the_power_meter(bench, tcp_driver):
    from hil.optics import OpticsModel, preset
    voa, laser, pm = tcp_driver("voa"), tcp_driver("laser"), tcp_driver("powermeter")
    model = OpticsModel(preset("gys2005", length_km=25), seed=1, attenuator=bench.voa)
    fibre_db = 0.21 * 25
    assert model.channel_loss_db() == pytest.approx(fibre_db)
    p0 = model.table().p_click[0]

    laser.power_dbm = 2.0
    laser.output_enabled = True
    voa.attenuation_db = 17.5
    laser.wait()
    voa.wait()
    assert bench.voa.attenuation_db == 17.5
    assert model.channel_loss_db() == pytest.approx(fibre_db + 17.5)
    eta = 0.045 * 10 ** (-(fibre_db + 17.5) / 10)           # GYS: eta_Bob 4.5 %, Y0 1.7e-6
    expected = 1 - (1 - 1.7e-6 / 4) ** 4 * math.exp(-0.5 * eta)
    assert model.table().p_click[0] == pytest.approx(expected, rel=1e-9) and expected < p0 / 10
    assert pm.power_dbm == pytest.approx(2.0 - 17.5, abs=1e-6)    # 9 digits on the wire
    assert pm.power_w == pytest.approx(1e-3 * 10 ** (-15.5 / 10))

    voa.output_enabled = False                 # shutter closed: no light, only dark counts
    voa.wait()
    assert pm.power_w == 0.0 and pm.power_dbm == -math.inf
    res = model.run_iid(200_000)
    assert len(res.clicks) == 0 or all(k == 1 for k in res.clicks.kind)


def test_laser_reports_in_watts_when_asked(bench, tcp_driver):
    laser = tcp_driver("laser")
    laser.power_dbm = 3.0
    laser.power_unit = "W"
    assert laser.power_unit == "W"
    assert float(laser.ask("SOUR0:POW?")) == pytest.approx(1e-3 * 10 ** 0.3)
    assert laser.power_dbm == pytest.approx(3.0)


def test_scpi_parsing_long_forms_suffixes_and_errors():
    voa = SimulatedVOA()
    assert voa.handle(":input:attenuation 3.5DB") is None and voa.attenuation_db == 3.5
    assert voa.handle("INPUT:WAVELENGTH 1.31UM") is None and voa.wavelength_nm == pytest.approx(1310)
    assert voa.handle("OUTP OFF") is None and voa.output_enabled is False
    assert voa.handle("outp:stat?") == "0"
    assert voa.handle("INP:ATT 3.5XYZ") is None and voa.attenuation_db == 3.5
    assert voa.handle("SYST:ERR?") == '-131,"Invalid suffix"'
    assert voa.handle("INP:BOGUS?") is None
    assert voa.handle("SYSTEM:ERROR:NEXT?") == '-113,"Undefined header"'
    assert voa.handle("SYST:ERR?") == '0,"No error"'
    with ScpiServer(voa) as server:
        import socket
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(b"INP:ATT 7;INP:ATT?;*IDN?\n")
            reply = b""
            while reply.count(b"\n") < 2:
                reply += s.recv(256)
    assert reply == b"+7.00000000E+00\nHEWLETT-PACKARD,HP8156A,SIM-VOA,qkdnode-sim\n"


def test_detector_temperature_follows_the_tec():
    now = [0.0]
    det = SimulatedDetector(tau_s=1.0, ambient_c=25.0, clock=lambda: now[0])
    assert det.handle("MEAS:TEMP?") == "+2.50000000E+01"
    det.handle("SOUR:TEMP -50")
    det.handle("OUTP:STAT 1")
    now[0] = 1.0
    assert float(det.handle("MEAS:TEMP?")) == pytest.approx(-50 + 75 * math.exp(-1))
    now[0] = 30.0
    assert float(det.handle("MEAS:TEMP?")) == pytest.approx(-50, abs=1e-9)
    det.handle("OUTP:STAT 0")
    now[0] = 31.0
    assert float(det.handle("MEAS:TEMP?")) == pytest.approx(25 - 75 * math.exp(-1))


def test_drivers_talk_to_the_detector_over_tcp(bench, tcp_driver):
    det = tcp_driver("detector")
    bench.detector.count_rate_hz = 1234.5
    det.tec_enabled = True
    det.temperature_setpoint_c = -40.0
    assert det.temperature_c == pytest.approx(-40.0)        # tau 0 in this bench: at once
    assert det.count_rate_hz == pytest.approx(1234.5)
    assert det.id.startswith("qkdnode,SPD-TEC")


def test_detector_settings_reach_the_optics_model(bench, tcp_driver):
    from hil.optics import OpticsModel, preset
    det = tcp_driver("detector")
    model = OpticsModel(preset("gys2005", length_km=0), seed=2, detector=bench.detector)
    det.efficiency_percent = 25
    det.dead_time_us = 1.5
    det.gate_mode = "free"
    det.wait()
    res = model.run_iid(100_000)
    r = model.config.receiver
    assert r.efficiency == (0.25,) * 4 and r.dead_time_ps == 1.5e6 and not r.gated
    # 10 ns slots: the rate written back is the clicks of the chunk over its duration
    assert bench.detector.count_rate_hz == pytest.approx(len(res.clicks) / (100_000 * 10e-9))
    assert det.count_rate_hz == pytest.approx(bench.detector.count_rate_hz, rel=1e-8)

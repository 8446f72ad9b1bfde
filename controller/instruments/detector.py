"""Single-photon detector with its TEC controller.

Temperature control uses the SCPI of the Thorlabs TED4015 TEC controller: ``SOUR:TEMP``
(setpoint, degC), ``MEAS:TEMP?`` (actual temperature, degC), ``OUTP:STAT`` (TEC on/off, 1/0).
Gated InGaAs single-photon detectors (ID Quantique ID210, Aurea, ...) speak proprietary, non-SCPI
protocols, so the detector settings are this project's SCPI extension under ``DET:``, with the
ID210's parameter ranges: ``DET:EFF`` (efficiency, %, one of 10/15/20/25), ``DET:DEAD``
(dead time, us), ``DET:GATE:MODE`` (GATED or FREE), ``DET:GATE:WIDT`` (gate width, ns) and
``DET:COUN?`` (count rate, Hz). A real detector needs a small adapter that speaks this set;
the simulated one is ``hil.scpi.SimulatedDetector``.
"""

from .base import (Instrument, boolean, control, measurement, strict_discrete_set, strict_range)


class PhotonDetector(Instrument):
    """A cooled, gated single-photon detector (InGaAs APD) behind a TED4015-style TEC."""

    SETPOINT_C = (-60.0, 30.0)
    EFFICIENCY_PERCENT = (10, 15, 20, 25)
    DEAD_TIME_US = (0.1, 100.0)
    GATE_WIDTH_NS = (0.1, 25.0)
    GATE_MODES = {"gated": "GATED", "free": "FREE"}

    temperature_c = measurement("MEAS:TEMP?", "Measure the detector (APD) temperature in degC.")

    temperature_setpoint_c = control(
        "SOUR:TEMP?", "SOUR:TEMP %.2f",
        "Control the TEC temperature setpoint in degC (-60 to +30).",
        validator=strict_range, values=SETPOINT_C)

    tec_enabled = boolean(
        "OUTP:STAT?", "OUTP:STAT %d",
        "Control whether the TEC regulates (True) or is off (False).")

    efficiency_percent = control(
        "DET:EFF?", "DET:EFF %d",
        "Control the detection efficiency setting in % (10, 15, 20 or 25; sets the APD bias).",
        validator=strict_discrete_set, values=EFFICIENCY_PERCENT, cast=lambda s: int(float(s)))

    dead_time_us = control(
        "DET:DEAD?", "DET:DEAD %.3f",
        "Control the dead time after a detection in us (0.1 to 100).",
        validator=strict_range, values=DEAD_TIME_US)

    gate_mode = control(
        "DET:GATE:MODE?", "DET:GATE:MODE %s",
        "Control the gating: 'gated' (external gate per slot) or 'free' (free-running).",
        validator=strict_discrete_set, values=GATE_MODES, map_values=True, cast=str)

    gate_width_ns = control(
        "DET:GATE:WIDT?", "DET:GATE:WIDT %.2f",
        "Control the width of a detection gate in ns (0.1 to 25).",
        validator=strict_range, values=GATE_WIDTH_NS)

    count_rate_hz = measurement("DET:COUN?", "Measure the detection rate in counts per second.")

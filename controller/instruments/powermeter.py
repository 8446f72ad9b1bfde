"""Optical power meter, command set of the Thorlabs PM100 series (PM100D, PM100USB, PM100A).

SCPI used: ``MEAS:POW?`` (power in W), ``SENS:CORR:WAV`` (wavelength correction, nm),
``SENS:AVER:COUN`` (samples averaged per reading, about 0.3 ms each). The wavelength range is
that of an InGaAs photodiode sensor such as the S154C (800-1700 nm). Real instrument: USBTMC
(``USB0::0x1313::0x8078::P0000000::INSTR``); simulated: ``hil.scpi.SimulatedPowerMeter``.
"""

import math

from .base import Instrument, control, measurement, strict_int_range, strict_range


def watts_to_dbm(power_w: float) -> float:
    """Return ``power_w`` (W) in dBm (-inf for no power)."""
    return 10.0 * math.log10(power_w / 1e-3) if power_w > 0 else -math.inf


class PowerMeter(Instrument):
    """A PM100-style optical power meter with an InGaAs sensor."""

    WAVELENGTH_NM = (800.0, 1700.0)
    AVERAGING = (1, 10000)

    power_w = measurement("MEAS:POW?", "Measure the optical power in W.")

    wavelength_nm = control(
        "SENS:CORR:WAV?", "SENS:CORR:WAV %.1f",
        "Control the wavelength (nm, 800 to 1700) the sensor's responsivity is corrected for.",
        validator=strict_range, values=WAVELENGTH_NM)

    averaging = control(
        "SENS:AVER:COUN?", "SENS:AVER:COUN %d",
        "Control how many samples are averaged per reading (1 to 10000).",
        validator=strict_int_range,
        values=AVERAGING, cast=lambda s: int(float(s)))

    @property
    def power_dbm(self) -> float:
        """Measure the optical power in dBm (one MEAS:POW? query, converted here)."""
        return watts_to_dbm(self.power_w)

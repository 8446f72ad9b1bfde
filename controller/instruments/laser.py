"""Laser source, command set of the Keysight 8164B mainframe's source slot 0 (81600B-type TLS).

SCPI used: ``SOUR0:WAV`` (wavelength; replies in m, takes a value with a unit suffix),
``SOUR0:POW`` (power in the unit set by ``SOUR0:POW:UNIT``: 0 = dBm, 1 = W; a set value carries
its unit suffix), ``SOUR0:POW:STAT`` (laser output on/off, 1/0). Real instrument: GPIB or LAN
(``TCPIP0::192.168.1.30::inst0::INSTR``); simulated: ``hil.scpi.SimulatedLaser``.
"""

from .base import Instrument, boolean, control, strict_discrete_set, strict_range
from .powermeter import watts_to_dbm


class LaserSource(Instrument):
    """An 8164B-style tunable laser source (1460-1640 nm, -20 to +10 dBm)."""

    WAVELENGTH_NM = (1460.0, 1640.0)
    POWER_DBM = (-20.0, 10.0)
    UNITS = {"dBm": 0, "W": 1}

    wavelength_nm = control(
        "SOUR0:WAV?", "SOUR0:WAV %.4fNM",
        "Control the laser wavelength in nm (1460 to 1640); the instrument replies in m.",
        validator=strict_range, values=WAVELENGTH_NM, get_process=lambda m: round(m * 1e9, 6))

    power_unit = control(
        "SOUR0:POW:UNIT?", "SOUR0:POW:UNIT %d",
        "Control the unit the instrument shows and answers power in: 'dBm' or 'W'.",
        validator=strict_discrete_set,
        values=UNITS, map_values=True, cast=lambda s: int(float(s)))

    output_enabled = boolean(
        "SOUR0:POW:STAT?", "SOUR0:POW:STAT %d",
        "Control whether the laser output is on (True) or off (False).")

    @property
    def power_dbm(self) -> float:
        """Control the output power setpoint in dBm (-20 to +10).

        Reading asks the unit first (SOUR0:POW:UNIT?), then the power (SOUR0:POW?), and converts
        W to dBm if needed; setting sends the value with its unit, ``SOUR0:POW <x>DBM``.
        """
        unit = self.power_unit
        value = float(self.ask("SOUR0:POW?"))
        return watts_to_dbm(value) if unit == "W" else value

    @power_dbm.setter
    def power_dbm(self, value: float) -> None:
        try:
            strict_range(value, self.POWER_DBM)
        except ValueError as exc:
            raise ValueError(f"LaserSource.power_dbm: {exc}; nothing was sent to the instrument") from None
        self.write("SOUR0:POW %.3fDBM" % value)

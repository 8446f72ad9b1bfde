"""Variable optical attenuator, command set of the Keysight (Agilent/HP) 8156A.

SCPI used: ``INP:ATT`` (attenuation, dB), ``INP:WAV`` (calibration wavelength; the 8156A
answers in metres, takes a value with a unit suffix), ``OUTP:STAT`` (output shutter, 1/0).
Real instrument: GPIB (``GPIB0::28::INSTR``) or through a LAN-GPIB gateway; the simulated one
(``hil.scpi.SimulatedVOA``) speaks the same commands on TCP.
"""

from .base import Instrument, boolean, control, strict_range


class VariableAttenuator(Instrument):
    """An 8156A-style variable optical attenuator (1200-1650 nm, 0-60 dB)."""

    ATTENUATION_DB = (0.0, 60.0)
    WAVELENGTH_NM = (1200.0, 1650.0)

    attenuation_db = control(
        "INP:ATT?", "INP:ATT %.3f",
        "Control the attenuation in dB (0 to 60, 0.001 dB steps).",
        validator=strict_range, values=ATTENUATION_DB)

    wavelength_nm = control(
        "INP:WAV?", "INP:WAV %.3fNM",
        "Control the calibration wavelength in nm (1200 to 1650); the instrument replies in m.",
        validator=strict_range, values=WAVELENGTH_NM, get_process=lambda m: round(m * 1e9, 6))

    output_enabled = boolean(
        "OUTP:STAT?", "OUTP:STAT %d",
        "Control whether the output shutter is open (True) or closed (False).")

"""pyvisa drivers of the bench's instruments, declared PyMeasure-style (see ``base``).

``VariableAttenuator`` (Keysight 8156A commands), ``PowerMeter`` (Thorlabs PM100),
``LaserSource`` (Keysight 8164B source slot), ``PhotonDetector`` (Thorlabs TED4015 TEC plus
this project's ``DET:`` detector commands). ``sim.SIM_BACKEND`` is the pyvisa-sim backend
string of all four. See docs/instruments.md.
"""

from .attenuator import VariableAttenuator
from .base import Instrument, InstrumentError, control, measurement, setting
from .detector import PhotonDetector
from .laser import LaserSource
from .powermeter import PowerMeter, watts_to_dbm

__all__ = ["Instrument", "InstrumentError", "control", "measurement", "setting",
           "VariableAttenuator", "PowerMeter", "LaserSource", "PhotonDetector", "watts_to_dbm"]

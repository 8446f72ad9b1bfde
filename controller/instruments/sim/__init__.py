"""pyvisa-sim definitions of the bench instruments (``instruments.yaml``) and their resource names."""

from pathlib import Path

SIM_YAML = Path(__file__).with_name("instruments.yaml")
SIM_BACKEND = f"{SIM_YAML}@sim"
SIM_RESOURCES = {
    "voa": "TCPIP::sim-voa::5025::SOCKET",
    "powermeter": "TCPIP::sim-powermeter::5025::SOCKET",
    "laser": "TCPIP::sim-laser::5025::SOCKET",
    "detector": "TCPIP::sim-detector::5025::SOCKET",
}

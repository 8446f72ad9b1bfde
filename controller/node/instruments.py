"""The bench instruments a node drives: set on start, read while running, exported as metrics.

Built from ``[instruments]`` of ``node.toml`` (:class:`controller.config.InstrumentsConfig`) with
the drivers of :mod:`controller.instruments` over VISA (a real bench, or the simulated one that
``qkdnode testbed up`` serves as SCPI over TCP):

* on start every configured instrument must answer ``*IDN?`` -- one that does not stops the node
  with an :class:`InstrumentFault` naming it and its resource; then the settings given are
  applied (VOA attenuation and wavelength, power meter wavelength, detector TEC setpoint with the
  TEC on, detector efficiency), the SCPI error queues checked, and a first reading taken;
* while running, :meth:`BenchInstruments.poll` reads VOA attenuation and shutter, optical power,
  laser output, detector temperature, TEC state and count rate every ``poll_s``; an instrument
  that stops answering is marked down (``qkd_instrument_up`` 0, a warning) and retried, it does
  not stop the node; a detector warmer than ``max_detector_temperature_c`` raises
  ``qkd_instrument_alarm{kind="detector_temperature"}`` and a warning.
"""

from __future__ import annotations

import logging
import threading

from controller.config import InstrumentsConfig

logger = logging.getLogger("qkdnode.node")


class InstrumentFault(RuntimeError):
    """A configured instrument does not answer or refuses a setting."""


def _drivers():
    from controller.instruments import LaserSource, PhotonDetector, PowerMeter, VariableAttenuator
    return {"attenuator": VariableAttenuator, "powermeter": PowerMeter, "laser": LaserSource,
            "detector": PhotonDetector}


class BenchInstruments:
    """The configured instruments of one node; :meth:`open` connects, checks and sets them."""

    def __init__(self, config: InstrumentsConfig, metrics=None, name: str = "node"):
        self.config, self.metrics, self.name = config, metrics, name
        self.devices: dict = {}
        self.up: dict[str, bool] = {}
        self.readings: dict = {}
        self.alarms: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- start --------------------------------------------------------------------------------

    def open(self) -> "BenchInstruments":
        """Connect every configured instrument, apply the settings, take a first reading."""
        drivers = _drivers()
        c = self.config
        try:
            for kind, resource in c.resources.items():
                try:
                    dev = drivers[kind](resource, c.backend, timeout_ms=c.timeout_ms)
                    idn = dev.id
                except Exception as exc:  # noqa: BLE001 - pyvisa raises many kinds
                    raise InstrumentFault(
                        f"[instruments] {kind} at {resource} does not answer ({_why(exc)}); "
                        f"check that it is on and reachable, or remove it from node.toml") from None
                self.devices[kind] = dev
                self.up[kind] = True
                logger.info("%s: %s at %s: %s", self.name, kind, resource, idn)
            self._apply()
            self.poll(strict=True)
        except BaseException:
            self.close()
            raise
        return self

    def _apply(self) -> None:
        c, d = self.config, self.devices
        steps = []
        if "attenuator" in d:
            if c.wavelength_nm is not None:
                steps.append(("attenuator", "wavelength_nm", c.wavelength_nm))
            if c.attenuation_db is not None:
                steps.append(("attenuator", "attenuation_db", c.attenuation_db))
        if "powermeter" in d and c.wavelength_nm is not None:
            steps.append(("powermeter", "wavelength_nm", c.wavelength_nm))
        if "detector" in d:
            if c.detector_efficiency_percent is not None:
                steps.append(("detector", "efficiency_percent", c.detector_efficiency_percent))
            if c.detector_setpoint_c is not None:
                steps.append(("detector", "temperature_setpoint_c", c.detector_setpoint_c))
                steps.append(("detector", "tec_enabled", True))
        for kind, attr, value in steps:
            try:
                setattr(d[kind], attr, value)
            except Exception as exc:  # noqa: BLE001
                raise InstrumentFault(f"[instruments] {kind}: setting {attr} = {value!r} failed "
                                      f"({_why(exc)})") from None
        for kind, dev in d.items():
            try:
                dev.wait()
                dev.check_errors()
            except Exception as exc:  # noqa: BLE001
                raise InstrumentFault(f"[instruments] {kind} at {self.config.resources[kind]} "
                                      f"after its settings: {_why(exc)}") from None
        for kind, attr, value in steps:             # read back what the node set
            got = getattr(d[kind], attr)
            if isinstance(value, bool) and bool(got) != value or \
                    not isinstance(value, bool) and abs(float(got) - float(value)) > 1e-3:
                raise InstrumentFault(f"[instruments] {kind}: {attr} set to {value!r} reads "
                                      f"back {got!r}")
            logger.info("%s: %s %s = %s", self.name, kind, attr, got)

    # -- reading ------------------------------------------------------------------------------

    def _read(self, kind) -> dict:
        dev = self.devices[kind]
        if kind == "attenuator":
            return {"attenuation_db": dev.attenuation_db, "output_enabled": dev.output_enabled}
        if kind == "powermeter":
            w = dev.power_w
            from controller.instruments import watts_to_dbm
            return {"power_w": w, "power_dbm": watts_to_dbm(w)}
        if kind == "laser":
            return {"power_dbm": dev.power_dbm, "output_enabled": dev.output_enabled}
        return {"temperature_c": dev.temperature_c, "tec_enabled": dev.tec_enabled,
                "count_rate_hz": dev.count_rate_hz}

    def poll(self, strict: bool = False) -> dict:
        """Read every instrument once; update ``readings``, the metrics and the alarms.

        ``strict``: a failure raises :class:`InstrumentFault` (on start); otherwise the instrument
        is marked down and read again at the next poll."""
        with self._lock:
            for kind in list(self.devices):
                try:
                    values = self._read(kind)
                except Exception as exc:  # noqa: BLE001
                    if strict:
                        raise InstrumentFault(f"[instruments] {kind} at "
                                              f"{self.config.resources[kind]}: reading failed "
                                              f"({_why(exc)})") from None
                    if self.up.get(kind, True):
                        logger.warning("%s: instrument %s stopped answering: %s", self.name, kind,
                                       _why(exc))
                    self.up[kind] = False
                    if self.metrics is not None:
                        self.metrics.record_instrument(kind, None)
                    continue
                if not self.up.get(kind, True):
                    logger.info("%s: instrument %s answers again", self.name, kind)
                self.up[kind] = True
                self.readings[kind] = values
                if self.metrics is not None:
                    self.metrics.record_instrument(kind, values)
            self._check_thresholds()
            return dict(self.readings)

    def _check_thresholds(self) -> None:
        limit = self.config.max_detector_temperature_c
        det = self.readings.get("detector")
        if limit is None or det is None or not self.up.get("detector"):
            return
        hot = det["temperature_c"] > limit
        if hot and not self.alarms.get("detector_temperature_active"):
            self.alarms["detector_temperature"] = self.alarms.get("detector_temperature", 0) + 1
            logger.warning("%s: INSTRUMENT ALARM: detector at %.2f degC, above the %.2f degC "
                           "limit", self.name, det["temperature_c"], limit)
        self.alarms["detector_temperature_active"] = int(hot)
        if self.metrics is not None:
            self.metrics.record_instrument_alarm("detector_temperature", hot)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "BenchInstruments":
        """Poll every ``poll_s`` in a background thread until :meth:`close`."""
        self._thread = threading.Thread(target=self._loop, name=f"instruments-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for dev in self.devices.values():
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - closing a dead session
                pass
        self.devices.clear()


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")

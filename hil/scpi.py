"""Simulated lab instruments served as SCPI over TCP, with state other code can hold.

``ScpiServer(instrument)`` serves one ``ScpiInstrument`` on ``127.0.0.1:PORT`` (newline-
terminated messages, ``;`` between commands on a line), reachable with pyvisa-py as
``TCPIP::127.0.0.1::PORT::SOCKET``. Headers follow SCPI: long or short form
(``INPut:ATTenuation`` = ``INP:ATT``), case-insensitive, optional leading colon, ``[...]``
nodes optional; numbers may carry a unit suffix (``1550NM``, ``3DBM``). A bad command or value
changes nothing and queues a SCPI error (``SYST:ERR?``); an unknown query gets no reply, as on
real instruments.

The four instruments speak the command sets of ``controller.instruments`` and keep their state
as plain attributes: ``SimulatedVOA.attenuation_db`` is the value ``hil.optics.OpticsModel``
reads as its attenuator, and light flows laser -> VOA -> power meter
(``output_power_w()`` at each stage). ``SimulatedBench`` starts all four, wired together.
"""

from __future__ import annotations

import math
import re
import socketserver
import threading
import time

__all__ = ["ScpiInstrument", "ScpiServer", "ScpiError", "SimulatedLaser", "SimulatedVOA",
           "SimulatedPowerMeter", "SimulatedDetector", "SimulatedBench", "parse_number"]

_SUFFIX = {"": 1.0, "PM": 1e-12, "NM": 1e-9, "UM": 1e-6, "MM": 1e-3, "M": 1.0,
           "W": 1.0, "MW": 1e-3, "UW": 1e-6, "NW": 1e-9, "PW": 1e-12,
           "S": 1.0, "MS": 1e-3, "US": 1e-6, "NS": 1e-9, "PS": 1e-12,
           "DB": 1.0, "DBM": 1.0, "C": 1.0, "CEL": 1.0, "HZ": 1.0}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


class ScpiError(Exception):
    """A SCPI error: ``code`` (e.g. -222) and its message, queued for SYST:ERR?."""

    def __init__(self, code: int, message: str):
        super().__init__(f'{code},"{message}"')
        self.code, self.message = code, message


def parse_number(arg: str, base_unit: str = "") -> float:
    """Return the number in ``arg`` in the base unit (suffix NM with base NM -> as is; else SI).

    ``base_unit`` is the unit a bare number is in: a suffix equal to it, or one of DB/DBM/C,
    leaves the value unchanged; other suffixes scale to SI and then to ``base_unit``.
    """
    m = _NUMBER.match(arg or "")
    if not m:
        raise ScpiError(-104, "Data type error")
    value, suffix = float(m.group(1)), m.group(2).upper()
    if suffix in ("", base_unit.upper()) or suffix in ("DB", "DBM", "C", "CEL"):
        return value
    if suffix not in _SUFFIX:
        raise ScpiError(-131, "Invalid suffix")
    return value * _SUFFIX[suffix] / _SUFFIX.get(base_unit.upper(), 1.0)


def parse_bool(arg: str) -> bool:
    """Return the SCPI boolean in ``arg`` (1/0/ON/OFF)."""
    word = (arg or "").strip().upper()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise ScpiError(-224, "Illegal parameter value")


def in_range(value: float, lo: float, hi: float) -> float:
    """Return ``value`` if within [lo, hi], else raise the SCPI 'Data out of range' error."""
    if not lo <= value <= hi:
        raise ScpiError(-222, "Data out of range")
    return value


def _header_regex(pattern: str) -> re.Pattern:
    # "INPut[:STATe]" -> each mnemonic matches its short (upper-case part) or long form
    parts = re.findall(r"\[:?([A-Za-z*0-9]+)\]|:?([A-Za-z*0-9]+)", pattern)
    out = []
    for optional, required in parts:
        word = optional or required
        short = "".join(ch for ch in word if not ch.islower())
        alt = re.escape(short) if short == word.upper() else (
            f"(?:{re.escape(word.upper())}|{re.escape(short)})")
        node = f":{alt}" if out else f":?{alt}"
        out.append(f"(?:{node})?" if optional else node)
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


class ScpiInstrument:
    """An instrument's command table and error queue; subclasses register commands in ``commands``.

    ``commands()`` returns (pattern, query handler or None, set handler or None); a query handler
    takes no argument and returns the reply string, a set handler takes the argument string.
    """

    idn = "qkdnode,Simulated,0,1.0"

    def __init__(self):
        self.errors: list[ScpiError] = []
        self.lock = threading.Lock()
        common = [("*IDN", lambda: self.idn, None), ("*RST", None, lambda _: self.reset()),
                  ("*CLS", None, lambda _: self.errors.clear()), ("*OPC", lambda: "1", None),
                  ("SYSTem:ERRor[:NEXT]", self._next_error, None)]
        self._table = [(_header_regex(p), q, s) for p, q, s in common + list(self.commands())]

    def commands(self):
        """Return this instrument's (pattern, query, set) commands."""
        return []

    def reset(self):
        """Return the instrument to its power-on state (*RST)."""

    def _next_error(self):
        if not self.errors:
            return '0,"No error"'
        err = self.errors.pop(0)
        return f'{err.code},"{err.message}"'

    def handle(self, command: str) -> str | None:
        """Execute one command; return the reply of a query (None for a set or an error)."""
        command = command.strip()
        if not command:
            return None
        header, _, arg = command.partition(" ")
        is_query = header.endswith("?")
        header = header[:-1] if is_query else header
        with self.lock:
            for regex, query, setter in self._table:
                if regex.match(header):
                    handler = query if is_query else setter
                    if handler is None:
                        break
                    try:
                        return handler() if is_query else handler(arg.strip())
                    except ScpiError as err:
                        self.errors.append(err)
                        return None
            self.errors.append(ScpiError(-113, "Undefined header"))
            return None


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        while True:
            try:
                line = self.rfile.readline()
            except OSError:
                return
            if not line:
                return
            server.received.extend(line)
            replies = [server.instrument.handle(part)
                       for part in line.decode("ascii", "replace").strip("\r\n").split(";")]
            out = "".join(f"{r}\n" for r in replies if r is not None)
            if out:
                self.wfile.write(out.encode("ascii"))


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ScpiServer:
    """Serve one ScpiInstrument on 127.0.0.1 (``port=0``: any free port) in a background thread.

    ``received`` holds every byte the clients sent (for byte-exact tests); ``resource`` is the
    VISA resource string. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, instrument: ScpiInstrument, port: int = 0):
        self.instrument = instrument
        self._server = _TCPServer(("127.0.0.1", port), _Handler)
        self._server.instrument = instrument
        self._server.received = bytearray()
        self._thread = None

    @property
    def port(self) -> int:
        """Return the TCP port the server listens on."""
        return self._server.server_address[1]

    @property
    def resource(self) -> str:
        """Return the pyvisa resource string of this server."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    @property
    def received(self) -> bytearray:
        """Return every byte received so far (clients together)."""
        return self._server.received

    def start(self) -> "ScpiServer":
        """Start serving in a daemon thread; return self."""
        # a short poll interval: stop() returns within ~20 ms instead of 0.5 s
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name=f"scpi-{type(self.instrument).__name__}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _on_off(flag: bool) -> str:
    return "1" if flag else "0"


def _db_to_factor(db: float) -> float:
    return 10.0 ** (-db / 10.0)


class SimulatedLaser(ScpiInstrument):
    """Laser source with the 8164B slot-0 commands; ``output_power_w()`` is what it emits (W)."""

    idn = "Agilent Technologies,8164B,SIM-LASER,qkdnode-sim"

    def __init__(self, power_dbm: float = 0.0, wavelength_nm: float = 1550.0):
        self.power_dbm, self.wavelength_nm = power_dbm, wavelength_nm
        self.output_enabled, self.unit_watts = False, False
        super().__init__()

    def reset(self):
        self.power_dbm, self.wavelength_nm = 0.0, 1550.0
        self.output_enabled, self.unit_watts = False, False

    def output_power_w(self) -> float:
        """Return the emitted power in W (0 when the output is off)."""
        return 1e-3 * 10.0 ** (self.power_dbm / 10.0) if self.output_enabled else 0.0

    def _set_power(self, arg):
        m = _NUMBER.match(arg)
        if m and m.group(2).upper() in ("W", "MW", "UW", "NW", "PW"):
            watts = parse_number(arg, "W")
            if watts <= 0:
                raise ScpiError(-222, "Data out of range")
            dbm = 10.0 * math.log10(watts / 1e-3)
        elif m and not m.group(2) and self.unit_watts:
            dbm = 10.0 * math.log10(max(float(m.group(1)), 1e-30) / 1e-3)
        else:
            dbm = parse_number(arg, "DBM")
        self.power_dbm = in_range(dbm, -20.0, 10.0)

    def _get_power(self):
        return f"{1e-3 * 10 ** (self.power_dbm / 10):+.8E}" if self.unit_watts \
            else f"{self.power_dbm:+.8E}"

    def _set_unit(self, arg):
        word = arg.strip().upper()
        if word not in ("0", "1", "DBM", "W", "WATT"):
            raise ScpiError(-224, "Illegal parameter value")
        self.unit_watts = word in ("1", "W", "WATT")

    def commands(self):
        return [
            ("SOURce0:WAVelength", lambda: f"{self.wavelength_nm * 1e-9:+.8E}",
             lambda a: setattr(self, "wavelength_nm",
                               in_range(parse_number(a, "NM") if a[-1:].isalpha()
                                        else float(a) * 1e9, 1460.0, 1640.0))),
            ("SOURce0:POWer:UNIT", lambda: _on_off(self.unit_watts), self._set_unit),
            ("SOURce0:POWer:STATe", lambda: _on_off(self.output_enabled),
             lambda a: setattr(self, "output_enabled", parse_bool(a))),
            ("SOURce0:POWer", self._get_power, self._set_power),
        ]


class SimulatedVOA(ScpiInstrument):
    """Variable optical attenuator with the 8156A commands; ``attenuation_db`` is shared state.

    ``source``: anything with ``output_power_w()`` feeding its input (a SimulatedLaser), or
    None. ``insertion_loss_db``: loss at 0 dB setting (the 8156A's is about 2.5 dB; 0 here).
    """

    idn = "HEWLETT-PACKARD,HP8156A,SIM-VOA,qkdnode-sim"

    def __init__(self, source=None, attenuation_db: float = 0.0, insertion_loss_db: float = 0.0):
        self.source = source
        self.attenuation_db, self.insertion_loss_db = attenuation_db, insertion_loss_db
        self.wavelength_nm, self.output_enabled = 1550.0, True
        super().__init__()

    def reset(self):
        self.attenuation_db, self.wavelength_nm, self.output_enabled = 0.0, 1550.0, True

    def output_power_w(self) -> float:
        """Return the power leaving the attenuator in W."""
        if self.source is None or not self.output_enabled:
            return 0.0
        return self.source.output_power_w() * _db_to_factor(self.attenuation_db
                                                            + self.insertion_loss_db)

    def commands(self):
        return [
            ("INPut:ATTenuation", lambda: f"{self.attenuation_db:+.8E}",
             lambda a: setattr(self, "attenuation_db", in_range(parse_number(a, "DB"), 0.0, 60.0))),
            ("INPut:WAVelength", lambda: f"{self.wavelength_nm * 1e-9:+.8E}",
             lambda a: setattr(self, "wavelength_nm",
                               in_range(parse_number(a, "NM") if a[-1:].isalpha()
                                        else float(a) * 1e9, 1200.0, 1650.0))),
            ("OUTPut[:STATe]", lambda: _on_off(self.output_enabled),
             lambda a: setattr(self, "output_enabled", parse_bool(a))),
        ]


class SimulatedPowerMeter(ScpiInstrument):
    """Power meter with the PM100 commands, reading ``source.output_power_w()``.

    ``noise_w``: RMS Gaussian noise added per reading, divided by sqrt(averaging) (0: exact);
    ``seed`` makes the noise reproducible.
    """

    idn = "Thorlabs,PM100D,SIM-PM,qkdnode-sim"

    def __init__(self, source=None, noise_w: float = 0.0, seed: int = 0):
        import random
        self.source, self.noise_w = source, noise_w
        self.wavelength_nm, self.averaging = 1550.0, 1
        self._random = random.Random(seed)
        super().__init__()

    def reset(self):
        self.wavelength_nm, self.averaging = 1550.0, 1

    def power_w(self) -> float:
        """Return one reading in W."""
        p = self.source.output_power_w() if self.source is not None else 0.0
        if self.noise_w:
            p += self._random.gauss(0.0, self.noise_w / math.sqrt(self.averaging))
        return p

    def _set_averaging(self, arg):
        value = parse_number(arg)
        if value != int(value):
            raise ScpiError(-224, "Illegal parameter value")
        self.averaging = int(in_range(value, 1, 10000))

    def commands(self):
        return [
            ("MEASure[:SCALar]:POWer", lambda: f"{self.power_w():.8E}", None),
            ("SENSe:CORRection:WAVelength", lambda: f"{self.wavelength_nm:.1f}",
             lambda a: setattr(self, "wavelength_nm", in_range(parse_number(a, "NM"), 800.0, 1700.0))),
            ("SENSe:AVERage[:COUNt]", lambda: str(self.averaging), self._set_averaging),
        ]


class SimulatedDetector(ScpiInstrument):
    """Single-photon detector and TEC (TED4015 + ``DET:`` commands) with a first-order thermal model.

    The temperature relaxes toward the setpoint (TEC on) or ``ambient_c`` (off) with time
    constant ``tau_s`` seconds of ``clock()`` (``time.monotonic`` unless given; 0 = at once).
    ``count_rate_hz`` is plain state (the testbed sets it from the optics model), or give
    ``count_rate`` as a callable returning Hz.
    """

    idn = "qkdnode,SPD-TEC,SIM-SPD,qkdnode-sim"

    def __init__(self, *, tau_s: float = 2.0, ambient_c: float = 25.0, clock=time.monotonic,
                 count_rate=None):
        self.tau_s, self.ambient_c, self.clock, self.count_rate = tau_s, ambient_c, clock, count_rate
        self.setpoint_c, self.tec_enabled = -50.0, False
        self._temp, self._t = ambient_c, clock()
        self.efficiency_percent, self.dead_time_us = 10, 10.0
        self.gate_mode, self.gate_width_ns, self.count_rate_hz = "GATED", 2.5, 0.0
        super().__init__()

    def reset(self):
        self.setpoint_c, self.tec_enabled = -50.0, False
        self.efficiency_percent, self.dead_time_us = 10, 10.0
        self.gate_mode, self.gate_width_ns = "GATED", 2.5

    @property
    def temperature_c(self) -> float:
        """Return the detector temperature in degC now (advances the thermal model)."""
        now = self.clock()
        target = self.setpoint_c if self.tec_enabled else self.ambient_c
        if self.tau_s <= 0:
            self._temp = target
        else:
            self._temp = target + (self._temp - target) * math.exp(-(now - self._t) / self.tau_s)
        self._t = now
        return self._temp

    def _set_tec(self, arg):
        _ = self.temperature_c               # settle the model up to now before switching
        self.tec_enabled = parse_bool(arg)

    def _set_setpoint(self, arg):
        _ = self.temperature_c
        self.setpoint_c = in_range(parse_number(arg, "C"), -60.0, 30.0)

    def _set_efficiency(self, arg):
        value = parse_number(arg)
        if value not in (10, 15, 20, 25):
            raise ScpiError(-224, "Illegal parameter value")
        self.efficiency_percent = int(value)

    def _set_mode(self, arg):
        word = arg.strip().upper()
        if word not in ("GATED", "FREE"):
            raise ScpiError(-224, "Illegal parameter value")
        self.gate_mode = word

    def _rate(self):
        return float(self.count_rate()) if self.count_rate else self.count_rate_hz

    def commands(self):
        return [
            ("MEASure:TEMPerature", lambda: f"{self.temperature_c:+.8E}", None),
            ("SOURce:TEMPerature", lambda: f"{self.setpoint_c:+.8E}", self._set_setpoint),
            ("OUTPut[:STATe]", lambda: _on_off(self.tec_enabled), self._set_tec),
            ("DETector:EFFiciency", lambda: str(self.efficiency_percent), self._set_efficiency),
            ("DETector:DEADtime", lambda: f"{self.dead_time_us:.3f}",
             lambda a: setattr(self, "dead_time_us", in_range(parse_number(a, "US"), 0.1, 100.0))),
            ("DETector:GATE:MODE", lambda: self.gate_mode, self._set_mode),
            ("DETector:GATE:WIDTh", lambda: f"{self.gate_width_ns:.2f}",
             lambda a: setattr(self, "gate_width_ns", in_range(parse_number(a, "NS"), 0.1, 25.0))),
            ("DETector:COUNts", lambda: f"{self._rate():.8E}", None),
        ]


class SimulatedBench:
    """Laser -> VOA -> power meter, plus the detector, each on its own TCP server.

    Attributes ``laser``, ``voa``, ``powermeter``, ``detector`` are the instruments (hand
    ``bench.voa`` to ``OpticsModel(attenuator=...)``); ``resources`` maps their names to VISA
    resource strings once started. A context manager; servers stop on exit.
    """

    def __init__(self, *, detector_tau_s: float = 2.0):
        self.laser = SimulatedLaser()
        self.voa = SimulatedVOA(source=self.laser)
        self.powermeter = SimulatedPowerMeter(source=self.voa)
        self.detector = SimulatedDetector(tau_s=detector_tau_s)
        self.servers = {name: ScpiServer(getattr(self, name))
                        for name in ("laser", "voa", "powermeter", "detector")}

    @property
    def resources(self) -> dict[str, str]:
        """Return {instrument name: VISA resource string}."""
        return {name: server.resource for name, server in self.servers.items()}

    def start(self) -> "SimulatedBench":
        """Start all servers; return self."""
        for server in self.servers.values():
            server.start()
        return self

    def stop(self) -> None:
        """Stop all servers."""
        for server in self.servers.values():
            server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

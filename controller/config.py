"""``node.toml``: a node's configuration, loaded and checked before anything starts.

Every mistake is reported with the file, the ``[section] key``, what was found, what was
expected and what to do; :class:`ConfigError` carries all of them at once.  Sections:

``[node]`` role (alice|bob), name, data_dir; ``[board]`` url, name (a board of ``boards/``:
its UART rate is the link's), baud (overrides), slot_period, frame_slots, random_source,
timeout_s (link reply timeout); ``[peer]`` listen or connect (HOST:PORT), psk (the pre-shared secret file);
``[protocol]`` block_slots, intensities, probabilities, p_x, max_qber,
min_single_photon_fraction, eps_sec, eps_cor, cascade_mode, reconciliation; ``[kme]`` id, peer_id, host, port,
local_saes, remote_saes, cert, key, ca, key_size, hybrid; ``[metrics]`` port, host;
``[instruments]`` VISA resources by name (attenuator, powermeter, laser, detector).
Relative paths are relative to the file.  An example is in docs/operations.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from controller.node.protocol import RECONCILIATIONS, Protocol

ROLES = ("alice", "bob")


class ConfigError(ValueError):
    """``node.toml`` is wrong; the message lists every problem found."""


@dataclass(frozen=True)
class BoardConfig:
    url: str
    slot_period: int = 48
    frame_slots: int = 1024
    random_source: str = "os"
    timeout_s: float = 0.25
    name: str | None = None
    baud: int | None = None

    @property
    def baudrate(self) -> int:
        """The serial link's rate: ``baud`` if given, else the named board's, else the
        simulation top's default (socket URLs ignore it)."""
        from boards import serial_baud
        return serial_baud(self.name, self.baud)


@dataclass(frozen=True)
class PeerConfig:
    psk: Path
    listen: tuple[str, int] | None = None
    connect: tuple[str, int] | None = None
    timeout_s: float = 30.0


@dataclass(frozen=True)
class KMESettings:
    id: str
    peer_id: str
    local_saes: tuple[str, ...]
    remote_saes: tuple[str, ...]
    cert: Path
    key: Path
    ca: Path
    host: str = "127.0.0.1"
    port: int = 8443
    key_size: int = 256
    hybrid: bool = False


@dataclass(frozen=True)
class NodeConfig:
    role: str
    name: str
    data_dir: Path
    board: BoardConfig
    peer: PeerConfig
    protocol: Protocol
    block_slots: int
    kme: KMESettings | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    instruments: "InstrumentsConfig | None" = None


INSTRUMENT_KINDS = ("attenuator", "powermeter", "laser", "detector")


@dataclass(frozen=True)
class InstrumentsConfig:
    """``[instruments]``: VISA resources of the bench and what the node sets and watches.

    resources: {kind: VISA resource} for kinds in ``INSTRUMENT_KINDS``. backend: pyvisa backend
    (``@py``). timeout_ms: I/O timeout. poll_s: seconds between readings while running.
    attenuation_db / wavelength_nm / detector_setpoint_c / detector_efficiency_percent: set on
    start when given (else only read). max_detector_temperature_c: above it the detector is
    reported too warm (log, ``qkd_instrument_alarm``).
    """

    resources: dict
    backend: str = "@py"
    timeout_ms: int = 2000
    poll_s: float = 5.0
    attenuation_db: float | None = None
    wavelength_nm: float | None = None
    detector_setpoint_c: float | None = None
    detector_efficiency_percent: int | None = None
    max_detector_temperature_c: float | None = None


class _Reader:
    """Collects problems instead of stopping at the first."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.problems = path, data, []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def section(self, name: str, required: bool = True) -> dict | None:
        sec = self.data.get(name)
        if sec is None:
            if required:
                self.problem(f"[{name}]", "section missing")
            return None
        if not isinstance(sec, dict):
            self.problem(f"[{name}]", f"expected a table, found {type(sec).__name__}")
            return None
        return sec

    def get(self, sec, name, key, kind, default=..., check=None, hint=""):
        where = f"[{name}] {key}"
        if sec is None or key not in sec:
            if default is ...:
                if sec is not None:
                    self.problem(where, f"missing{'; ' + hint if hint else ''}")
                return None
            return default
        value = sec[key]
        ok_types = (int, float) if kind is float else kind
        if isinstance(value, bool) and kind is not bool or not isinstance(value, ok_types):
            self.problem(where, f"expected {getattr(kind, '__name__', kind)}, found {value!r}")
            return None
        if check is not None:
            err = check(value)
            if err:
                self.problem(where, f"{err} (found {value!r}){'; ' + hint if hint else ''}")
                return None
        return float(value) if kind is float else value

    def path_of(self, sec, name, key, default=..., must_exist=False):
        raw = self.get(sec, name, key, str, default)
        if raw is None:
            return None
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else self.path.parent / p
        if must_exist and not p.exists():
            self.problem(f"[{name}] {key}", f"file {p} does not exist")
        return p

    def address(self, sec, name, key):
        raw = self.get(sec, name, key, str, None)
        if raw is None:
            return None
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            self.problem(f"[{name}] {key}", f"expected HOST:PORT such as 127.0.0.1:7000, found {raw!r}")
            return None
        return host, int(port)


def _positive(v):
    return None if v > 0 else "must be > 0"


def _prob(v):
    return None if 0 <= v <= 1 else "must be between 0 and 1"


def load_config(path: str | Path, *, overrides: dict | None = None) -> NodeConfig:
    """Read and check ``node.toml``; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file. Write one from the example in "
                          f"docs/operations.md, or give --config the right path.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    for sec, values in (overrides or {}).items():
        data.setdefault(sec, {}).update(values)
    return parse_config(data, path)


def _known_board(name):
    from boards import BOARDS
    return None if name in BOARDS else f"is not a board; boards are {', '.join(BOARDS)}"


def parse_config(data: dict, path: Path = Path("node.toml")) -> NodeConfig:
    """Check a parsed TOML document (see :func:`load_config`)."""
    r = _Reader(Path(path), data)
    known = {"node", "board", "peer", "protocol", "kme", "metrics", "instruments"}
    for extra in sorted(set(data) - known):
        r.problem(f"[{extra}]", f"unknown section; sections are {', '.join(sorted(known))}")
    node = r.section("node")
    role = r.get(node, "node", "role", str, check=lambda v: None if v in ROLES else
                 "must be 'alice' or 'bob'")
    name = r.get(node, "node", "name", str, role or "node")
    data_dir = r.path_of(node, "node", "data_dir", "data")

    b = r.section("board")
    board = BoardConfig(
        url=r.get(b, "board", "url", str, hint="a link URL: /dev/ttyUSB1, socket://HOST:PORT"),
        slot_period=r.get(b, "board", "slot_period", int, 48,
                          check=lambda v: None if v >= 4 else "must be >= 4 clock cycles"),
        frame_slots=r.get(b, "board", "frame_slots", int, 1024,
                          check=lambda v: None if 1 <= v < 16384 else "must be 1..16383"),
        random_source=r.get(b, "board", "random_source", str, "os"),
        timeout_s=r.get(b, "board", "timeout_s", float, 0.25, check=_positive),
        name=r.get(b, "board", "name", str, None, check=_known_board),
        baud=r.get(b, "board", "baud", int, None, check=_positive))

    p = r.section("peer")
    listen, connect = r.address(p, "peer", "listen"), r.address(p, "peer", "connect")
    if p is not None and (listen is None) == (connect is None) and not r.problems:
        r.problem("[peer]", "give exactly one of listen = \"HOST:PORT\" (this node waits for its "
                            "peer) or connect = \"HOST:PORT\" (this node dials its peer)")
    peer = PeerConfig(psk=r.path_of(p, "peer", "psk", must_exist=True), listen=listen,
                      connect=connect,
                      timeout_s=r.get(p, "peer", "timeout_s", float, 30.0, check=_positive))

    pr = r.section("protocol", required=False) or {}
    dflt = Protocol()
    seq = lambda key, d: tuple(float(x) for x in r.get(pr, "protocol", key, list, list(d)) or d)  # noqa: E731
    intensities, probabilities = seq("intensities", dflt.intensities), seq("probabilities", dflt.probabilities)
    if len(intensities) != len(probabilities):
        r.problem("[protocol] probabilities", f"{len(probabilities)} values for "
                  f"{len(intensities)} intensities: give one probability per intensity")
    elif abs(sum(probabilities) - 1) > 1e-9:
        r.problem("[protocol] probabilities", f"must sum to 1, they sum to {sum(probabilities):g}")
    if len(intensities) not in (2, 3):
        r.problem("[protocol] intensities", "give 3 (signal, decoy, vacuum) or 2 (signal, decoy)")
    proto = Protocol(
        intensities=intensities, probabilities=probabilities,
        p_x=r.get(pr, "protocol", "p_x", float, dflt.p_x, check=_prob),
        max_qber=r.get(pr, "protocol", "max_qber", float, dflt.max_qber,
                       check=lambda v: None if 0 < v < 0.5 else "must be between 0 and 0.5"),
        min_single_photon_fraction=r.get(pr, "protocol", "min_single_photon_fraction", float,
                                         dflt.min_single_photon_fraction, check=_prob),
        eps_sec=r.get(pr, "protocol", "eps_sec", float, dflt.eps_sec,
                      check=lambda v: None if 0 < v < 1 else "must be between 0 and 1"),
        eps_cor=r.get(pr, "protocol", "eps_cor", float, dflt.eps_cor,
                      check=lambda v: None if 0 < v < 1 else "must be between 0 and 1"),
        cascade_mode=r.get(pr, "protocol", "cascade_mode", str, dflt.cascade_mode,
                           check=lambda v: None if v in ("standard", "low-round") else
                           "must be 'standard' or 'low-round'"),
        reconciliation=r.get(pr, "protocol", "reconciliation", str, dflt.reconciliation,
                             check=lambda v: None if v in RECONCILIATIONS else
                             f"must be one of {', '.join(map(repr, RECONCILIATIONS))}"),
        method="two-decoy" if len(intensities) == 3 else "one-decoy")
    block_slots = r.get(pr, "protocol", "block_slots", int, 50_000_000,
                        check=lambda v: None if v >= 10_000 and v % 2 == 0 else
                        "must be an even number >= 10000")

    k = r.section("kme", required=False)
    kme = None
    if k is not None:
        names = lambda key: tuple(r.get(k, "kme", key, list, []) or ())  # noqa: E731
        kme = KMESettings(
            id=r.get(k, "kme", "id", str), peer_id=r.get(k, "kme", "peer_id", str),
            local_saes=names("local_saes"), remote_saes=names("remote_saes"),
            cert=r.path_of(k, "kme", "cert", must_exist=True),
            key=r.path_of(k, "kme", "key", must_exist=True),
            ca=r.path_of(k, "kme", "ca", must_exist=True),
            host=r.get(k, "kme", "host", str, "127.0.0.1"),
            port=r.get(k, "kme", "port", int, 8443,
                       check=lambda v: None if 0 <= v <= 65535 else "must be 0..65535"),
            key_size=r.get(k, "kme", "key_size", int, 256,
                           check=lambda v: None if v > 0 and v % 8 == 0 else
                           "must be a positive multiple of 8 bits"),
            hybrid=r.get(k, "kme", "hybrid", bool, False))
        if not kme.local_saes:
            r.problem("[kme] local_saes", "list the SAE IDs attached to this KME, e.g. [\"sae-a\"]")
    m = r.section("metrics", required=False) or {}
    metrics_port = r.get(m, "metrics", "port", int, None,
                         check=lambda v: None if 0 <= v <= 65535 else "must be 0..65535")
    instruments = _instruments(r, r.section("instruments", required=False) or {})
    if r.problems:
        raise ConfigError(f"{path} has {len(r.problems)} problem(s):\n  "
                          + "\n  ".join(r.problems))
    return NodeConfig(role=role, name=name, data_dir=data_dir, board=board, peer=peer,
                      protocol=proto, block_slots=block_slots, kme=kme,
                      metrics_port=metrics_port,
                      metrics_host=r.get(m, "metrics", "host", str, "127.0.0.1"),
                      instruments=instruments)


def _instruments(r: _Reader, sec: dict) -> InstrumentsConfig | None:
    settings = {"backend", "timeout_ms", "poll_s", "attenuation_db", "wavelength_nm",
                "detector_setpoint_c", "detector_efficiency_percent", "max_detector_temperature_c"}
    for extra in sorted(set(sec) - settings - set(INSTRUMENT_KINDS)):
        r.problem(f"[instruments] {extra}", f"unknown key; instruments are "
                  f"{', '.join(INSTRUMENT_KINDS)} (VISA resources), settings "
                  f"{', '.join(sorted(settings))}")
    resources = {}
    for kind in INSTRUMENT_KINDS:
        res = r.get(sec, "instruments", kind, str, None,
                    check=lambda v: None if "::" in v else
                    "expected a VISA resource such as TCPIP::10.0.0.5::5025::SOCKET")
        if res is not None:
            resources[kind] = res
    cfg = InstrumentsConfig(
        resources=resources,
        backend=r.get(sec, "instruments", "backend", str, "@py"),
        timeout_ms=r.get(sec, "instruments", "timeout_ms", int, 2000, check=_positive),
        poll_s=r.get(sec, "instruments", "poll_s", float, 5.0, check=_positive),
        attenuation_db=r.get(sec, "instruments", "attenuation_db", float, None,
                             check=lambda v: None if 0 <= v <= 60 else "must be 0..60 dB"),
        wavelength_nm=r.get(sec, "instruments", "wavelength_nm", float, None,
                            check=lambda v: None if 1200 <= v <= 1650 else "must be 1200..1650 nm"),
        detector_setpoint_c=r.get(sec, "instruments", "detector_setpoint_c", float, None,
                                  check=lambda v: None if -60 <= v <= 30 else "must be -60..30 degC"),
        detector_efficiency_percent=r.get(sec, "instruments", "detector_efficiency_percent", int,
                                          None, check=lambda v: None if v in (10, 15, 20, 25)
                                          else "must be 10, 15, 20 or 25"),
        max_detector_temperature_c=r.get(sec, "instruments", "max_detector_temperature_c", float,
                                         None))
    needs = {"attenuation_db": "attenuator", "detector_setpoint_c": "detector",
             "detector_efficiency_percent": "detector", "max_detector_temperature_c": "detector"}
    for key, kind in needs.items():
        if getattr(cfg, key) is not None and kind not in resources:
            r.problem(f"[instruments] {key}", f"needs the {kind}: give its VISA resource as "
                      f"[instruments] {kind}")
    if sec and not resources:
        r.problem("[instruments]", f"no instrument given; name at least one of "
                  f"{', '.join(INSTRUMENT_KINDS)}, or remove the section")
    return cfg if resources else None

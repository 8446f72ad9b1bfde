"""A small PyMeasure-style base for SCPI instruments over pyvisa.

Drivers declare their properties: ``control`` (query and set), ``measurement`` (query only)
and ``setting`` (set only). Values are checked against their range or set *before* anything is
sent, so a wrong value never reaches the instrument; booleans travel as 1/0 and read back as
True/False. Each driver opens its resource through ``pyvisa.ResourceManager(backend)``: ``@py``
(pyvisa-py: TCP sockets, serial, USBTMC) for real or simulated instruments on TCP, ``@ivi`` for a
vendor VISA, ``path/to/file.yaml@sim`` for pyvisa-sim.
"""

from __future__ import annotations

import pyvisa

__all__ = ["Instrument", "InstrumentError", "control", "measurement", "setting",
           "boolean", "strict_range", "strict_int_range", "strict_discrete_set",
           "strict_boolean"]


class InstrumentError(RuntimeError):
    """The instrument reported an error (its SCPI error queue was not empty)."""


def strict_range(value, limits):
    """Return ``value`` if ``limits[0] <= value <= limits[1]``, else raise ValueError."""
    lo, hi = limits
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{value!r} is out of range: expected a number from {lo:g} to {hi:g}")
    return value


def strict_int_range(value, limits):
    """Return ``value`` if it is an int within ``limits`` (inclusive), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not allowed: expected a whole number")
    return strict_range(value, limits)


def strict_discrete_set(value, values):
    """Return ``value`` if it is one of ``values``, else raise ValueError."""
    if isinstance(value, bool) or value not in values:
        raise ValueError(f"{value!r} is not allowed: expected one of {list(values)}")
    return value


def strict_boolean(value, values=None):
    """Return ``value`` if it is True or False (not 0/1, not a string), else raise ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not allowed: expected True or False")
    return value


class _Property:
    """Descriptor behind control/measurement/setting (name-aware for error messages)."""

    def __init__(self, get_command, set_command, doc, *, validator=None, values=None,
                 map_values=False, cast=float, get_process=None, set_process=None):
        self.get_command, self.set_command = get_command, set_command
        self.validator, self.values, self.map_values = validator, values, map_values
        self.cast, self.get_process, self.set_process = cast, get_process, set_process
        self.__doc__ = doc
        self.name = "?"

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        if self.get_command is None:
            raise AttributeError(f"{self.name} can be set but not read on {type(obj).__name__}")
        reply = obj.ask(self.get_command)
        try:
            value = self.cast(reply)
            if self.map_values:
                inverse = {self.cast(v): k for k, v in self.values.items()}
                value = inverse[value]
        except (ValueError, KeyError):
            raise InstrumentError(f"{type(obj).__name__}.{self.name}: unexpected reply {reply!r} "
                                  f"to {self.get_command!r}") from None
        return self.get_process(value) if self.get_process else value

    def __set__(self, obj, value):
        if self.set_command is None:
            raise AttributeError(f"{self.name} is a measurement of {type(obj).__name__}: "
                                 "it can be read, not set")
        if self.validator is not None:
            try:
                self.validator(value, self.values)
            except ValueError as exc:
                raise ValueError(f"{type(obj).__name__}.{self.name}: {exc}; nothing was sent "
                                 "to the instrument") from None
        if self.map_values:
            value = self.values[value]
        if self.set_process:
            value = self.set_process(value)
        obj.write(self.set_command % value)


def control(get_command, set_command, doc, **options):
    """Return a property that queries ``get_command`` and sends ``set_command % value``.

    Options: ``validator(value, values)`` raising ValueError, ``values`` (a range tuple, a set,
    or with ``map_values=True`` a dict user value -> wire value), ``cast`` (reply parser,
    default float), ``get_process``/``set_process`` (unit conversions on each side).
    """
    return _Property(get_command, set_command, doc, **options)


def measurement(get_command, doc, **options):
    """Return a read-only property that queries ``get_command``."""
    return _Property(get_command, None, doc, **options)


def setting(set_command, doc, **options):
    """Return a write-only property that sends ``set_command % value``."""
    return _Property(None, set_command, doc, **options)


def boolean(get_command, set_command, doc):
    """Return a control whose values are True/False, sent as 1/0 (SCPI booleans)."""
    return control(get_command, set_command, doc, validator=strict_boolean,
                   values={True: 1, False: 0}, map_values=True, cast=int)


class Instrument:
    """A SCPI instrument on a VISA resource (messages terminated by newline both ways).

    ``resource``: a VISA resource string, e.g. ``TCPIP::192.168.1.20::5025::SOCKET`` or
    ``ASRL/dev/ttyUSB0::INSTR``. ``backend``: the pyvisa backend (``@py``, ``@ivi``, or a
    pyvisa-sim YAML path followed by ``@sim``). ``timeout_ms``: I/O timeout in ms.
    """

    def __init__(self, resource: str, backend: str = "@py", *, timeout_ms: int = 2000):
        self.manager = pyvisa.ResourceManager(backend)
        self.resource = self.manager.open_resource(resource, read_termination="\n",
                                                   write_termination="\n", timeout=timeout_ms)

    id = measurement("*IDN?", "Return the identification string (maker,model,serial,firmware).",
                     cast=str)

    def write(self, command: str) -> None:
        """Send one command (the newline is added by the resource)."""
        self.resource.write(command)

    def ask(self, command: str) -> str:
        """Send a query and return the reply without its termination."""
        return self.resource.query(command).strip()

    def wait(self) -> None:
        """Block until the instrument has executed everything sent before (*OPC? answers 1).

        Sets are not acknowledged: call this before relying on a setting through another
        instrument (e.g. the power meter after a VOA change).
        """
        self.ask("*OPC?")

    def reset(self) -> None:
        """Reset the instrument to its power-on settings (*RST)."""
        self.write("*RST")

    def clear(self) -> None:
        """Clear the status and the error queue (*CLS)."""
        self.write("*CLS")

    def check_errors(self) -> None:
        """Read the SCPI error queue (SYST:ERR?) until empty; raise InstrumentError if it held any."""
        errors = []
        for _ in range(32):
            reply = self.ask("SYST:ERR?")
            if reply.split(",", 1)[0].strip() in ("0", "+0"):
                break
            errors.append(reply)
        if errors:
            raise InstrumentError(f"{type(self).__name__} reported: {'; '.join(errors)}")

    def close(self) -> None:
        """Close the VISA resource."""
        self.resource.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Typed errors of the host link: each message says what happened and what the operator can do.

Every error subclasses ``LinkError``, so a front end can catch the family and print the message.
"""

from gateware.spec.protocol import ErrorCode, Opcode

__all__ = [
    "LinkError", "TransportError", "NoResponse", "CRCErrors", "DeviceError", "ProtocolError",
    "StreamStalled", "StreamOrderError", "StreamUncertain", "WrongDevice", "VersionMismatch",
]


def _opcode_name(opcode):
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02X}"


class LinkError(Exception):
    """Base of every error raised by ``controller.link`` and ``controller.device``."""


class TransportError(LinkError):
    """The byte stream could not be opened or broke (bad URL, missing port, refused connection)."""

    ACCEPTED = ("a serial port such as /dev/ttyUSB1 or /dev/ttyACM0 (COM3 on Windows), "
                "socket://HOST:PORT for a board model or RTL twin on TCP, "
                "or loop:// for an in-process loopback")

    def __init__(self, url, reason):
        self.url = url
        self.reason = reason
        super().__init__(f"cannot use link {url!r}: {reason}. Accepted forms: {self.ACCEPTED}.")


class NoResponse(LinkError):
    """No valid reply arrived for a request after every retry."""

    def __init__(self, url, request, timeout, attempts, baudrate=None):
        self.url = url
        self.request = request
        self.timeout = timeout
        self.attempts = attempts
        self.baudrate = baudrate
        baud = f" (this link runs at {baudrate} baud)" if baudrate else ""
        super().__init__(
            f"no reply from the board on {url} to {request}: waited {timeout:g} s per attempt, "
            f"{attempts} attempt(s). Check that the board is powered and flashed with qkdnode "
            f"gateware (`qkdnode flash`), that {url} is the board's link port, and that the baud "
            f"rate matches the gateware{baud}.")


class CRCErrors(LinkError):
    """Replies arrived but were corrupt (bad CRC or framing) too often to get through."""

    def __init__(self, url, request, corrupt, attempts, baudrate=None):
        self.url = url
        self.request = request
        self.corrupt = corrupt
        self.attempts = attempts
        self.baudrate = baudrate
        baud = f" ({baudrate} baud here)" if baudrate else ""
        super().__init__(
            f"{corrupt} corrupt frame(s) (bad CRC or COBS) from {url} while sending {request}, "
            f"no valid reply in {attempts} attempt(s). The bytes arrive but are damaged: check that "
            f"the baud rate matches the gateware{baud}, and the cable/USB-UART (shorter cable, "
            f"other port, lower baud).")


class DeviceError(LinkError):
    """The device refused a well-formed request with an ERROR reply."""

    _HINTS = {
        "BAD_OPCODE": "the gateware does not serve this request; host and gateware may be out of step "
                      "(run `qkdnode board info`, reflash with `qkdnode flash`)",
        "BAD_LENGTH": "the request's payload length is wrong for its opcode (host bug or version skew)",
        "BAD_ADDRESS": "no register at this address in this gateware image; check the register name and "
                       "that the image has this block",
        "READ_ONLY": "this register is read-only",
        "BAD_COUNT": "a burst must read 1..MAX_BURST registers",
        "BAD_CHANNEL": "this image does not serve the stream channel, or it is disabled "
                       "(LOOPBACK needs core.control.loopback=1)",
        "STREAM_FULL": "the channel's FIFO has less room than the data; wait and send less",
    }

    def __init__(self, code, detail, request_opcode, request=None):
        self.code = code
        self.detail = detail
        self.request_opcode = request_opcode
        self.request = request
        try:
            self.code_name = ErrorCode(code).name
        except ValueError:
            self.code_name = f"unknown error code 0x{code:02X}"
        what = request or _opcode_name(request_opcode)
        hint = self._HINTS.get(self.code_name, "the gateware reported an error this host does not know; "
                                               "check versions with `qkdnode board info`")
        super().__init__(f"the board refused {what}: {self.code_name} (detail {detail:#06x} = {detail}); "
                         f"{hint}.")


class ProtocolError(LinkError):
    """A CRC-valid reply did not have the layout the protocol says (version skew or a bug)."""

    def __init__(self, url, request, problem):
        self.url = url
        self.request = request
        super().__init__(f"malformed reply from {url} to {request}: {problem}. Host and gateware "
                         f"disagree on the protocol: check `qkdnode board info`, reflash with "
                         f"`qkdnode flash`.")


class StreamStalled(LinkError):
    """A host-to-device stream made no progress: the device's FIFO stayed full."""

    def __init__(self, url, channel, sent, total, waited):
        self.url = url
        self.channel = channel
        super().__init__(f"stream channel {channel} on {url} accepted no data for {waited:g} s "
                         f"({sent} of {total} bytes sent): the device's FIFO stays full. Check that "
                         f"whatever drains the channel is running and enabled.")


def _ranges(ranges, limit=6):
    shown = ", ".join(f"{o}+{n}" for o, n in ranges[:limit])
    return shown + (f", ... ({len(ranges)} in all)" if len(ranges) > limit else "") or "none"


class StreamOrderError(LinkError):
    """A frame lost mid-window left the device holding later stream bytes before earlier ones.

    ``delivered`` lists the (offset, length) ranges of the data the device took, in its order;
    ``missing`` the ranges it did not take. The device's FIFO cannot be reordered: flush it (or
    restart what consumes it) and send again.
    """

    def __init__(self, url, channel, delivered, missing):
        self.url = url
        self.channel = channel
        self.delivered = list(delivered)
        self.missing = list(missing)
        super().__init__(f"stream channel {channel} on {url}: a frame was lost on the way to the "
                         f"board while later ones got through, so the board holds the data out of "
                         f"order (taken, in its order: {_ranges(self.delivered)}; not taken: "
                         f"{_ranges(self.missing)}). Flush the channel and send again; a noisy link "
                         f"also shows in link.crc_errors and link.uart_errors.")


class StreamUncertain(LinkError):
    """Stream frames went unanswered and the board's counters cannot tell which it took."""

    def __init__(self, url, channel, unanswered, arrived, delivered, why):
        self.url = url
        self.channel = channel
        self.unanswered = unanswered
        self.arrived = arrived
        self.delivered = list(delivered)
        super().__init__(f"stream channel {channel} on {url}: {unanswered} frame(s) got no reply "
                         f"and whether the board took them is unknown ({why}). What the channel "
                         f"holds is uncertain: flush it and send again; check the link "
                         f"(`qkdnode board info`, link.crc_errors, link.uart_errors).")


class WrongDevice(LinkError):
    """``core.id`` does not hold the qkdnode device id: another device or wrong port."""

    def __init__(self, url, found, expected):
        self.url = url
        self.found = found
        self.expected = expected
        text = bytes((found >> s) & 0xFF for s in (24, 16, 8, 0))
        shown = text.decode("ascii") if all(0x20 <= b < 0x7F for b in text) else "not ASCII"
        super().__init__(f"the device on {url} is not a qkdnode board: core.id reads 0x{found:08X} "
                         f"({shown}), expected 0x{expected:08X} (\"QKDN\"). Check the port, or flash "
                         f"the board with `qkdnode flash`.")


class VersionMismatch(LinkError):
    """The gateware speaks another protocol version or is another major release."""

    def __init__(self, url, found, expected):
        self.url = url
        self.found = found
        self.expected = expected
        super().__init__(f"the gateware on {url} is {found}, this host needs {expected}: the "
                         f"protocol version must match and the gateware major version must match. "
                         f"Reflash the board with `qkdnode flash` (or install the matching host).")

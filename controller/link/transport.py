"""Byte-stream transports for the host link, opened through pyserial's ``serial_for_url``.

One URL names the board whatever its target: ``/dev/ttyUSB1`` (hardware), ``socket://HOST:PORT``
(the behavioural model or the RTL twin), ``loop://`` (in-process loopback, for tests).
"""

import logging
import socket
from urllib.parse import urlsplit

import serial

from .errors import TransportError

__all__ = ["DEFAULT_BAUD", "Transport", "open_transport"]

logger = logging.getLogger(__name__)

#: The UART rate when nothing says otherwise: ``gateware.top.NodeTop``'s default (12 Mbaud from
#: its default 48 MHz clock, what simulations use). The boards run slower (``boards/``: iCEBreaker
#: 6 Mbaud, ULX3S 3 Mbaud); the CLI takes the rate from ``--board`` (``qkdnode board info``).
DEFAULT_BAUD = 12_000_000

_READ_CHUNK = 1 << 16


class Transport:
    """A byte stream with a blocking-with-timeout ``read`` that returns all bytes available.

    Wraps an open pyserial port (any ``serial_for_url`` object). ``rx_bytes``/``tx_bytes`` count
    the bytes moved, for link statistics and benchmarks.
    """

    def __init__(self, port, url=None, baudrate=None):
        self.port = port
        self.url = url or getattr(port, "portstr", None) or repr(port)
        self.baudrate = baudrate
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._timeout = object()

    def _set_timeout(self, timeout):
        if timeout != self._timeout:
            self.port.timeout = timeout
            self._timeout = timeout

    def write(self, data):
        """Send ``data`` (bytes) and wait until it has left the host."""
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(self.url, f"write failed ({exc})") from exc
        self.tx_bytes += len(data)

    def read(self, timeout):
        """Return the bytes available, waiting up to ``timeout`` s for the first; b"" on timeout."""
        try:
            self._set_timeout(timeout)
            first = self.port.read(1)
            if not first:
                return b""
            self._set_timeout(0)
            rest = self.port.read(_READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(self.url, f"read failed ({exc})") from exc
        data = first + rest
        self.rx_bytes += len(data)
        return data

    def discard_input(self):
        """Drop bytes already received and not yet read (stale replies)."""
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError, AttributeError):
            pass

    def close(self):
        """Close the port.

        A ``socket://`` port is closed here directly: pyserial's own close sleeps a fixed 0.3 s
        "for quick reconnects", which the board model and the RTL bridge do not need.
        """
        sock = getattr(self.port, "_socket", None)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            self.port._socket = None
            self.port.is_open = False
            return
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_socket_url(url):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportError(url, f"the port is not a number 0..65535 ({exc})") from exc
    if not parts.hostname or port is None:
        raise TransportError(url, "a socket URL needs a host and a port, like socket://127.0.0.1:5000")


def open_transport(url, baudrate=DEFAULT_BAUD, timeout=0.1):
    """Open the byte stream named by ``url`` and return a Transport.

    ``baudrate`` (baud) matters only for serial ports; ``timeout`` (s) is the initial read timeout.
    Raises TransportError naming the URL and the accepted forms if it cannot be opened.
    """
    if not isinstance(url, str) or not url.strip():
        raise TransportError(url, "the URL is empty")
    if url.startswith("socket://"):
        _check_socket_url(url)
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=None)
    except ValueError as exc:
        raise TransportError(url, f"not a valid link URL ({exc})") from exc
    except (serial.SerialException, OSError) as exc:
        raise TransportError(url, f"could not open it ({exc})") from exc
    logger.debug("opened %s at %s baud", url, baudrate)
    return Transport(port, url, baudrate if not url.startswith(("socket://", "loop://")) else None)

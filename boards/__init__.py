"""Dev boards: one module per board mapping each role's signals to pins (``boards.base.Board``).

``BOARDS`` maps a board's name (as ``qkdnode bitstream --board NAME`` takes it) to its ``Board``.
"""

from .base import Board, BoardTop, RolePins

__all__ = ["BOARDS", "get_board", "serial_baud", "Board", "BoardTop", "RolePins"]


def _boards():
    from . import arty_a7, icebreaker, ulx3s
    return {b.name: b for b in (icebreaker.BOARD, ulx3s.BOARD, arty_a7.BOARD)}


BOARDS = _boards()


def get_board(name):
    """Return the Board called ``name``; ValueError lists the boards there are."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"no board {name!r}; boards are: {', '.join(BOARDS)}") from None


def serial_baud(board=None, baud=None):
    """Return the UART rate for a board's serial port: ``baud`` if given, else the rate of the
    board called ``board``, else the simulation top's ``DEFAULT_BAUD``; ValueError for an
    unknown board."""
    if baud is not None:
        return baud
    if board is not None:
        return get_board(board).baud
    from controller.link.transport import DEFAULT_BAUD
    return DEFAULT_BAUD

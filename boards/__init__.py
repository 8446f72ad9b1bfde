"""Dev boards: one module per board mapping each role's signals to pins (``boards.base.Board``).

``BOARDS`` maps a board's name (as ``qkdnode bitstream --board NAME`` takes it) to its ``Board``.
"""

from .base import Board, BoardTop, RolePins

__all__ = ["BOARDS", "get_board", "Board", "BoardTop", "RolePins"]


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

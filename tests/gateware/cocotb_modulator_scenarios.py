"""Stimulus scripts for Alice's modulator core and their replay on the behavioural model.

Shared by the Amaranth-simulator tests (``test_modulator.py``) and the cocotb ones
(``cocotb_modulator.py``): both drive the core with a script, record what its pins played slot by
slot and the REPORTS bytes, and compare with ``expected(script)``, the model's answer.

A script is a list of steps:

* ``("set", register, value)``: write a ``modulator`` register (by its spec name);
* ``("push", data)``: put bytes into the CHOICES stream (all taken before the next step);
* ``("slots", n)``: let ``n`` slot starts pass (the next steps happen in the slot's first cycles);
* ``("idle",)``: wait until a stopped run has ended and its records are queued.

Each run's slot length and frame size are set before it starts. A push must be taken, and reach
the core's prefetch, before the slot ends: keep ``len(data) + 4`` below the slot period, so the
first choice pushed in slot n plays in slot n + 1 on the gateware as on the model.
"""

import random

from gateware.spec.modulator import ReportLayout, REPORT_BYTES
from gateware.spec.registers import REGISTER_MAP, Role

__all__ = ["scenarios", "expected", "decode_reports", "CHOICES_DEPTH", "pulse_offsets_ok"]

#: Choice FIFO depth of the core under test, in bytes.
CHOICES_DEPTH = 64


def _config(period, frame, delay=0, width=1, seed=1):
    return [("set", "slot_period", period), ("set", "frame_slots", frame),
            ("set", "trigger_delay", delay), ("set", "trigger_width", width),
            ("set", "lfsr_seed", seed)]


def scenarios(seed):
    """Return ``{name: script}`` with random choices drawn from ``seed``."""
    rng = random.Random(seed)

    def choices(n):
        return bytes(rng.randrange(256) for _ in range(n))

    return {
        # Prefilled choices, then a dry FIFO: every choice to the pins, then an underflow run.
        "prefill_then_underflow": _config(6, 7, delay=1, width=2) + [
            ("push", choices(24)), ("set", "control", 1), ("slots", 60), ("set", "control", 0),
            ("slots", 0)],
        # Underflow at the start, a refill mid-run, a second underflow, stop inside it.
        "underflow_refill": _config(12, 5, delay=3, width=3) + [
            ("set", "control", 1), ("slots", 4), ("push", choices(6)), ("slots", 20),
            ("push", choices(3)), ("slots", 10), ("set", "control", 0), ("slots", 0)],
        # Two runs back to back: the slot counter goes on, the frame restarts.
        "two_runs": _config(9, 4) + [
            ("push", choices(8)), ("set", "control", 1), ("slots", 10), ("set", "control", 0),
            ("idle",), ("push", choices(4)), ("set", "control", 1), ("slots", 6),
            ("set", "control", 0), ("slots", 0)],
        # The LFSR pattern: played from the seed, no underflow, every record flagged.
        "lfsr": _config(4, 16, seed=rng.getrandbits(32)) + [
            ("set", "control", 3), ("slots", 40), ("set", "control", 0), ("slots", 0)],
    }


def expected(script):
    """Return ``(slots, report_bytes, underflow_slots)`` the model plays for ``script``.

    ``slots`` is a list of ``(state, intensity, laser, sync)`` per slot played.
    """
    from hil.model import ModelBoard
    trace = []
    board = ModelBoard(role=Role.ALICE, alice_options={"clock": None, "trace": trace,
                                                       "choices_depth": CHOICES_DEPTH})
    alice = board.alice
    for step in script:
        if step[0] == "set":
            board.bank.write(REGISTER_MAP.address(f"modulator.{step[1]}"), step[2])
        elif step[0] == "push":
            alice.choices.put(step[1])
        elif step[0] == "slots":
            alice.advance(step[1])
        elif step[0] != "idle":
            raise ValueError(f"unknown step {step!r}")
    return trace, bytes(alice.reports.queue), board.bank.get("modulator.underflow_slots")


def decode_reports(raw):
    """Return the REPORTS bytes ``raw`` as a list of ``(kind, lfsr, first_slot, count)``."""
    assert len(raw) % REPORT_BYTES == 0, f"{len(raw)} report bytes is not whole records"
    out = []
    for i in range(0, len(raw), REPORT_BYTES):
        view = ReportLayout.from_bits(int.from_bytes(raw[i:i + REPORT_BYTES], "little"))
        out.append((view.kind.name, int(view.lfsr), int(view.first_slot), int(view.count)))
    return out


def pulse_offsets_ok(offsets, fired, delay, width):
    """Return True if a slot's pulse cycles (offsets from its first cycle) are as configured."""
    return offsets == (list(range(delay, delay + max(width, 1))) if fired else [])

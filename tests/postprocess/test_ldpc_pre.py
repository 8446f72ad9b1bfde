"""LDPC blind steps disclosed with the syndrome (``pre``): the same as failing the first attempts."""

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import ldpc
from controller.postprocess.reconcile import reconcile

from .test_ldpc import _pair
from .test_ldpc import recorded as _run


@pytest.mark.parametrize("qber,pre,seed", [(0.02, 1, 31), (0.05, 2, 32), (0.02, 12, 33)])
def test_pre_steps_are_failed_first_attempts_one_flight_earlier(monkeypatch, qber, pre, seed):
    # decoder "amin": with "q16" a failed attempt switches the frame to the amin kernel
    # (``LdpcBob._decode``), so skipped attempts would change the kernel of the later ones
    a, b = _pair(seed, 60_000, qber)
    plans = [ldpc.plan_frame(20_000, qber)] * 3
    fixed, rep, log = _run(a, b, qber, seed, pre=pre, decoder="amin")
    # the same frames with pre=0, Bob failing each frame's first ``pre`` attempts undecoded
    decode, calls = core.decode, {}

    def skipping(row_ptr, cols, shifts, z, ssign, post, msg, *args):
        calls[id(msg)] = calls.get(id(msg), 0) + 1
        return (0, False) if calls[id(msg)] <= pre else decode(row_ptr, cols, shifts, z, ssign, post, msg, *args)

    monkeypatch.setattr(core, "decode", skipping)
    want_fixed, want, want_log = _run(a, b, qber, seed, pre=0, decoder="amin")
    assert np.array_equal(fixed, want_fixed) and np.array_equal(fixed, a), f"seed {seed}"
    assert rep.leaked_bits == want.leaked_bits and rep.failed_frames == want.failed_frames == 0
    assert rep.rounds == want.rounds - pre, f"seed {seed}"
    # Alice's first flight carries the pre x delta disclosed bits per frame (key bits past the
    # punctured ones), metered as leaked
    first = [e for e in log[:6] if e[0] == "alice"]
    assert len(first) == 6 and first[5][2] and first[5][3] == "ec"
    assert first[5][1] == sum(min(pre * p.delta, p.p + p.k) for p in plans)
    assert want_log[:5] == log[:5]
    if pre == 12:
        assert pre * plans[0].delta > plans[0].p, "the key-bit reveals were not reached"


def test_pre_steps_default_and_bounds():
    assert ldpc.pre_steps(0.02) == dict(ldpc.PRE_STEPS)[0.02]
    assert ldpc.pre_steps(0.001) == ldpc.pre_steps(0.02) and ldpc.pre_steps(0.3) == ldpc.pre_steps(0.08)
    a, b = _pair(1, 1000, 0.05)
    for pre in (-1, 31):
        with pytest.raises(ValueError, match="pre must be"):
            reconcile(a, b, 0.05, "ldpc", pre=pre)

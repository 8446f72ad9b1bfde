"""Finite-key bounds: soundness against the true photon-number statistics."""

import math

import numpy as np
import pytest

from controller.postprocess.finite_key import DecoyCounts, secret_key_length, tag_bits_for
from controller.postprocess.link_model import LIM2014
from controller.postprocess.planning import FiniteSettings, expected_counts

PARAMS = LIM2014.with_(p_ap=0.0)


def _true_single_photon_counts(settings, pulses, eta, p_basis):
    y1 = 1.0 - (1.0 - PARAMS.y0) * (1.0 - eta)
    mus = np.asarray(settings.intensities)
    ps = np.asarray(settings.probabilities)
    return pulses * p_basis * float(np.sum(ps * mus * np.exp(-mus))) * y1


@pytest.mark.parametrize("method,settings", [
    ("two-decoy", FiniteSettings(0.8, (0.5, 0.1, 0.0), (0.6, 0.3, 0.1))),
    ("one-decoy", FiniteSettings(0.8, (0.5, 0.15), (0.6, 0.4))),
])
@pytest.mark.parametrize("block", [1e5, 1e8])
def test_single_photon_bound_is_below_truth(method, settings, block):
    eta = PARAMS.transmittance(40.0)
    counts, pulses = expected_counts(PARAMS, 40.0, block, settings)
    res = secret_key_length(counts, 0.0, method=method)
    true_s1 = _true_single_photon_counts(settings, pulses, eta, settings.p_key ** 2)
    assert 0.0 < res.s1 <= true_s1
    # the bound tightens with the block: within 10 % of the truth at 1e8
    if block == 1e8:
        assert res.s1 > 0.9 * true_s1
    # phase error bound above the true single-photon error rate
    e1 = (PARAMS.y0 / 2 + PARAMS.e_d * eta) / (PARAMS.y0 + eta)
    assert res.phi >= e1


def test_key_length_accounts_for_leak_and_security_parameters():
    s = FiniteSettings(0.9, (0.5, 0.1, 0.0), (0.7, 0.2, 0.1))
    counts, _ = expected_counts(PARAMS, 20.0, 1e7, s)
    base = secret_key_length(counts, 1000.0)
    more_leak = secret_key_length(counts, 2000.0)
    assert base.raw_length - more_leak.raw_length == pytest.approx(1000.0)
    stricter = secret_key_length(counts, 1000.0, eps_cor=1e-20)
    assert base.raw_length - stricter.raw_length == pytest.approx(math.log2(1e5), rel=1e-9)
    assert base.length == math.floor(base.raw_length)


def test_no_key_from_high_error_rate():
    # 12 % misalignment: above the ~11 % BB84 threshold once error correction is paid for.
    noisy = PARAMS.with_(e_d=0.12)
    s = FiniteSettings(0.9, (0.5, 0.1, 0.0), (0.7, 0.2, 0.1))
    counts, _ = expected_counts(noisy, 10.0, 1e8, s)
    qber = sum(counts.m_key) / sum(counts.n_key)
    from controller.postprocess.infotheory import h2
    res = secret_key_length(counts, noisy.f_ec * 1e8 * h2(qber))
    assert res.length == 0 and res.raw_length < 0
    # the same link at 2 % misalignment does give key
    clean = PARAMS.with_(e_d=0.02)
    counts, _ = expected_counts(clean, 10.0, 1e8, s)
    qber = sum(counts.m_key) / sum(counts.n_key)
    assert secret_key_length(counts, clean.f_ec * 1e8 * h2(qber)).length > 0


def test_invalid_intensities_are_rejected():
    counts = DecoyCounts((0.5, 0.4, 0.2), (0.6, 0.3, 0.1), (1, 1, 1), (0, 0, 0), (1, 1, 1), (0, 0, 0))
    with pytest.raises(ValueError, match="mu1 > mu2 \\+ mu3"):
        secret_key_length(counts, 0.0)
    with pytest.raises(ValueError, match="one per intensity"):
        DecoyCounts((0.5, 0.1), (0.5, 0.5), (1,), (0,), (1, 1), (0, 0))


def test_tag_bits_for_eps_cor():
    assert tag_bits_for(1e-15) == 50
    assert 2.0 ** -tag_bits_for(1e-10) <= 1e-10

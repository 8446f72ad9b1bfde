"""The demo's key rate against the planning model, and what authentication costs per block.

One seeded demo run on the demo's bench (both nodes, the authenticated channel, both KMEs)
with one block of n_Z = 200 000 key-basis detections on a 0 km link with 10 % detectors: the
same regime as the demo (under 3 % of the slots click, so double clicks stay rare, which the
model ignores) but a block of 3.3e7 slots instead of 5.1e7 per 1e5 detections, and a tighter
finite-key spread.  Spread of the secret length per block at these settings: 3.7 % (standard
deviation over 6 seeds of the optics model with the node's sifting and squashing, measured
when this test was written; 16.8 % at the demo's 25 km and n_Z = 1e5, which is why the demo's
own two blocks only show the agreement, not pin it).  The 10 % bound of issue 7 is then 2.7
standard deviations of one block.  Before the model was fed the run's afterpulse physics and
Cascade's measured f, it predicted 19 % less here, which this test would have caught.
"""

import pytest

from controller.node.protocol import Protocol
from hil.demo import run_demo

pytestmark = pytest.mark.slow       # one block of 3.3e7 slots: 1.5 to 5 min on the loaded VM

SEED = 7
PROTO = Protocol()


@pytest.fixture(scope="module")
def demo():
    return run_demo(distance_km=0.0, block_size=200_000, blocks=1, seed=SEED, keys=1,
                    proto=PROTO, bench="testbed", bench_options={"efficiency": 0.1})


def test_demo_key_rate_within_10_percent_of_the_model(demo):
    assert demo.ok, (demo.failures, SEED)
    assert demo.blocks_with_key == 1, (demo.history, SEED)
    ratio = demo.secret_key_rate_bps / demo.model_key_rate_bps
    assert abs(ratio - 1.0) < 0.10, (f"measured {demo.secret_key_rate_bps:.1f} bit/s, model "
                                      f"{demo.model_key_rate_bps:.1f} bit/s (ratio {ratio:.3f}), "
                                      f"model {demo.model}, seed {SEED}")
    assert demo.rate_ratio == pytest.approx(ratio, abs=1e-4)


def test_authentication_costs_less_key_than_a_block_makes(demo):
    """Three one-time pads per block (one end tag each way and Bob's tagged "committed"; the
    session's HELLOs on its first block), far below the block's key: the node gains key, and
    says how much."""
    assert demo.ok, (demo.failures, SEED)
    for block in demo.history:
        used = block["auth_bits_used"]
        assert 0 < used <= 5 * 128, (block, SEED)
        assert used < block["secret_bits"], (block, SEED)
        assert block["net_bits"] == block["secret_bits"] - used, (block, SEED)
    assert demo.net_bits == demo.secret_bits - demo.auth_bits_used > 0, SEED
    assert demo.keys_match and demo.stores_agree, SEED

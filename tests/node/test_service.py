"""`qkdnode run`'s service: two nodes built from node.toml files, with KMEs and metrics."""

from controller.channel import AuthKeyPool
from controller.config import load_config
from controller.kms.pki import init_pki
from controller.node.service import NodeService
from hil.demo import SimBench

from .conftest import PROTO, wait_until

TEMPLATE = """
[node]
role = "{role}"
data_dir = "{role}-data"
[board]
url = "{url}"
slot_period = 6
timeout_s = 2.0
[peer]
{peer}
psk = "channel.psk"
[protocol]
block_slots = 120000
intensities = [0.5, 0.1, 0.0002]
probabilities = [0.4, 0.4, 0.2]
[kme]
id = "{role}-kme"
peer_id = "{other}-kme"
port = 0
local_saes = ["sae-{role}"]
remote_saes = ["sae-{other}"]
cert = "pki/kme/{role}-kme.pem"
key = "pki/kme/{role}-kme.key"
ca = "pki/ca.pem"
[metrics]
port = 0
"""


def test_two_services_from_node_toml_distil_blocks(tmp_path):
    init_pki(tmp_path / "pki", ["alice-kme", "bob-kme"], ["sae-alice", "sae-bob"])
    AuthKeyPool.create_secret_file(tmp_path / "channel.psk", n_messages=4096)
    services = []
    with SimBench(distance_km=0.0, proto=PROTO, seed=31, efficiency=0.3) as bench:
        try:
            for role, other, url in (("alice", "bob", bench.alice_url), ("bob", "alice", bench.bob_url)):
                peer = ('listen = "127.0.0.1:0"' if role == "alice" else
                        f'connect = "127.0.0.1:{services[0].address[1]}"')
                path = tmp_path / f"{role}.toml"
                path.write_text(TEMPLATE.format(role=role, other=other, url=url, peer=peer))
                cfg = load_config(path)
                assert cfg.protocol == PROTO
                services.append(NodeService(cfg).start())
            alice, bob = (s.node for s in services)
            wait_until(lambda: alice.stats.blocks >= 1 and bob.stats.blocks >= 1 or alice.error
                       or bob.error, "one block from the services", seed=31)
            assert alice.error is None and bob.error is None
            assert services[0].metrics_server.port and services[0].kme_server.port
            blocks = services[0].metrics.registry.get_sample_value(
                "qkd_blocks_total", {"node": "alice", "outcome": "key"})
            assert blocks and blocks >= 1
        finally:
            for s in services:
                s.stop()

"""A whole node from its ``node.toml``: board, channel, key store, KME, metrics, run loop.

``NodeService(config).start()`` is what ``qkdnode run`` does; ``stop()`` stops everything it
started (servers on their addresses, the node thread, the store).
"""

from __future__ import annotations

import logging

from controller.channel import AuthKeyPool
from controller.config import NodeConfig
from controller.kms.store import KeyStore
from controller.metrics import Metrics

from .boards import AliceBoard, BobBoard
from .runner import Node

logger = logging.getLogger("qkdnode.node")


class NodeService:
    """Everything one end of a link runs, built from a checked :class:`NodeConfig`."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self.store = self.kme = self.kme_server = self.metrics = self.metrics_server = None
        self.instruments = None
        self.node: Node | None = None

    def start(self) -> "NodeService":
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        key_size = c.kme.key_size if c.kme else 256
        self.store = KeyStore(c.data_dir / "keys.db", c.data_dir / "node.key", key_size=key_size)
        pool = AuthKeyPool.from_file(c.peer.psk, state_path=c.data_dir / "channel.state")
        self.metrics = Metrics(c.name)
        if c.metrics_port is not None:
            self.metrics_server = self.metrics.serve(c.metrics_port, c.metrics_host)
            logger.info("%s: metrics on %s", c.name, self.metrics_server.url)
        if c.kme is not None:
            from controller.kms.etsi014 import KMEServer, TLSFiles
            from controller.kms.kme import KME, KMEConfig
            k = c.kme
            self.kme = KME(KMEConfig(k.id, k.peer_id, frozenset(k.local_saes), frozenset(k.remote_saes),
                                     hybrid=k.hybrid, newest_first=c.role == "alice"), self.store)
            self.kme_server = KMEServer(self.kme, TLSFiles(k.cert, k.key, k.ca), host=k.host,
                                        port=k.port).start()
            logger.info("%s: KME %s serving ETSI 014 on %s", c.name, k.id, self.kme_server.url)
        if c.instruments is not None:       # fails the start if one does not answer
            from .instruments import BenchInstruments
            self.instruments = BenchInstruments(c.instruments, self.metrics, c.name).open().start()
        b = c.board
        board = (AliceBoard(b.url, c.protocol, slot_period=b.slot_period, frame_slots=b.frame_slots,
                            random_source=b.random_source, link_timeout=b.timeout_s,
                            baudrate=b.baudrate)
                 if c.role == "alice" else
                 BobBoard(b.url, slot_period=b.slot_period, frame_slots=b.frame_slots,
                          link_timeout=b.timeout_s, baudrate=b.baudrate))
        self.node = Node(c.role, board, c.protocol, c.block_slots, self.store, pool,
                         listen=c.peer.listen, connect_to=c.peer.connect, kme=self.kme,
                         metrics=self.metrics, name=c.name, timeout_s=c.peer.timeout_s,
                         slot_hz=None)
        self.node.start()
        return self

    @property
    def address(self):
        """Return the (host, port) this node listens on for its peer, if it listens."""
        return self.node.address if self.node else None

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        if self.instruments is not None:
            self.instruments.close()
        if self.kme_server is not None:
            self.kme_server.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.store is not None:
            self.store.close()

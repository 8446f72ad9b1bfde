"""A node's run loop: board -> blocks -> distillation over the authenticated channel -> key store.

* ``protocol``: one block's distillation, Alice's half and Bob's half.
* ``boards``: the board side of each role (Alice's choice feeder, Bob's tagger) cut into blocks.
* ``runner``: ``AliceNode`` / ``BobNode``: sessions, blocks, commits, alarms, recovery, metrics.
* ``service``: a whole node from ``node.toml`` (board, channel, key store, KME, metrics).
"""

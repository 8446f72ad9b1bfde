"""Key distillation for decoy-state BB84: pure functions over numpy arrays.

Pipeline: :mod:`sift` -> :mod:`estimate` -> :mod:`reconcile` -> :mod:`verify`
-> :mod:`finite_key` (secret length) -> :mod:`amplify`.  Interactive steps talk
through a :class:`~controller.postprocess.channel.Channel`, which meters every
disclosed bit.  Planning models live in :mod:`link_model`, :mod:`asymptotic`
and :mod:`planning`.
"""

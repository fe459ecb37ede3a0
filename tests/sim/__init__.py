"""A deterministic discrete-event simulator of the gossip network that drives the real
sans-IO core (``bridge.core.gossip``, ``gossip_wire``, ``reconcile``) on a virtual clock.

``python -m tests.sim --help``; docs/sharding.md shows its table and how to regenerate it.
"""

"""The deterministic simulator (TigerBeetle VOPR style) for the C-LBFT core.

``node.sim.runner.simulate(SimConfig(...))`` runs N instances of the real
``consensus.core.Core`` on a virtual clock and a seeded network, injects the
faults of ``node.sim.schedule`` and the Byzantine behaviours of
``node.sim.byzantine``, checks the invariants of ``node.sim.checker`` after every
step and returns a ``SimResult``. ``gridchain sim`` (``node.cli.sim``) runs one
seed; ``python -m node.sim.sweep`` runs thousands.

No wall clock, no asyncio, no sockets: a seed replays exactly.
"""

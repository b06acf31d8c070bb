"""frogs: targeted clean-label poisoning (Poison Frogs!, Shafahi et al., 2018) as experiments.

The pieces are importable without Hydra: ``frogs.data``, ``frogs.models``, ``frogs.attacks``,
``frogs.defenses``, ``frogs.victims``, ``frogs.evaluate``, ``frogs.records`` and
``frogs.experiment``.
"""

__version__ = "0.1.0"

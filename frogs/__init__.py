"""frogs: targeted clean-label poisoning (Poison Frogs!, Shafahi et al., 2018) as experiments.

The folders follow a trial's data flow and are importable without Hydra: ``frogs.config``
(settings, composition, registries), ``frogs.data``, ``frogs.models``, ``frogs.attacks``,
``frogs.defenses``, ``frogs.victims``, ``frogs.experiment`` (the trial stages),
``frogs.measures``, ``frogs.store`` (records, cache, checkpoints) and ``frogs.interchange``.
"""

__version__ = "0.1.0"

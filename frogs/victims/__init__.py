"""Victims (``victim=`` group): how the poisoned training set becomes a model.

A victim is three parts, one module each, composed by the option's builder:

- ``data_view.VictimData``: the images it trains on and is scored on (the poisoned set, the
  accuracy set);
- ``evaluator.Evaluator``: the clean model's view (its features f(x), where poisons are crafted;
  its class probabilities) and any classifier's predictions on the accuracy set;
- ``retrainer.Retrainer``: one seeded training run, the clean-retrained control, and the
  poisoned victim with its decision-boundary angle after every epoch.

``transfer`` (Sec. 3) freezes the extractor and retrains the final layer cold-start;
``end_to_end`` (Sec. 4) retrains the whole network warm-start from the clean model. A new victim
is a module here (or a plugin) registering a builder ``VictimInputs -> Victim`` under its name.
"""

from __future__ import annotations

from frogs.config.registry import Registry

VICTIMS: Registry = Registry("victim")

"""``python -m benchmarks``: how fast frogs is, as ratios measured side by side in one run.

Every figure compares frogs with the bare PyTorch loop doing the same arithmetic (the practical
limit) and, where one exists, with the peer a user would otherwise pick (the
adversarial-robustness-toolbox). Contenders run interleaved, repeated, and are summarised by
medians, so that noise from other processes on a shared machine hits all of them alike.
"""

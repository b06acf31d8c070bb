"""Data: datasets, the victim's task, target and base selection, the poisoned training set."""

"""The experiment: a job's plan and the trial stages craft -> defend -> retrain -> evaluate."""

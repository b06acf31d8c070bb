"""Models: architectures, training, mixed precision, clean-model pretraining."""

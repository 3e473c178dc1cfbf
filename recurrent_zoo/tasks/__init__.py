"""Synthetic and real tasks the benches and the training loop run on."""

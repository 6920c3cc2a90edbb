"""offdiff: a benchmark suite for diffusion-policy offline reinforcement learning."""

__version__ = "0.1.0"

"""offdiff: a benchmark suite for diffusion-policy offline reinforcement learning."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`offdiff.load_run` without importing torch at `import offdiff`."""
    if name == "load_run":
        from offdiff.eval.load import load_run

        return load_run
    raise AttributeError(f"module 'offdiff' has no attribute {name!r}")

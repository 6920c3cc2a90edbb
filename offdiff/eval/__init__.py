"""Policy evaluation through gymnasium vector envs."""

from offdiff.lazy import lazy_exports

__all__ = ["EpisodeResult", "evaluate", "evaluation_row"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "offdiff.eval.evaluate"))  # `offdiff eval --help`: no torch

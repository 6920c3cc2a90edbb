"""Policy evaluation through gymnasium vector envs (`evaluate` itself: `from offdiff.eval.evaluate import evaluate`,
since `offdiff.eval.evaluate` names the module)."""

from offdiff.lazy import lazy_exports

__all__ = ["EpisodeResult", "TimedAct", "evaluation_row"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "offdiff.eval.evaluate"))  # `offdiff eval --help`: no torch

"""Policy evaluation through gymnasium vector envs."""

from offdiff.eval.evaluate import EpisodeResult, evaluate

__all__ = ["EpisodeResult", "evaluate"]

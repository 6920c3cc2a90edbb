"""Policy evaluation through gymnasium vector envs."""

from offdiff.eval.evaluate import EpisodeResult, evaluate, evaluation_row

__all__ = ["EpisodeResult", "evaluate", "evaluation_row"]

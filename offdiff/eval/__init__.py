"""Policy evaluation through gymnasium vector envs."""

from offdiff.eval.evaluate import EpisodeResult, TimedAct, evaluate, evaluation_row

__all__ = ["EpisodeResult", "TimedAct", "evaluate", "evaluation_row"]

"""Critics: the vectorized double-Q with its target, TD targets, and IQL's expectile value learning."""

from offdiff.critics.double_q import DoubleQ, td_target
from offdiff.critics.iql import IQLCritic, ValueNet, expectile_loss

__all__ = ["DoubleQ", "IQLCritic", "ValueNet", "expectile_loss", "td_target"]

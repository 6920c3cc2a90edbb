"""EDA (Efficient Diffusion Alignment) as an offdiff plugin (entry point `eda`)."""

from offdiff_eda.eda import EDA, EDAConfig

__all__ = ["EDA", "EDAConfig"]

"""DTQL (Diffusion Trusted Q-Learning) as an offdiff plugin (entry point `dtql`)."""

from offdiff_dtql.dtql import DTQL, DTQLConfig

__all__ = ["DTQL", "DTQLConfig"]

"""Diffusion-QL as an offdiff plugin (entry point `dql`)."""

from offdiff_dql.dql import DiffusionQL, DQLConfig

__all__ = ["DQLConfig", "DiffusionQL"]

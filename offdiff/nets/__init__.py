"""Network building blocks: MLPs, time embeddings, vectorized ensembles and target-network updates."""

from offdiff.nets.embeddings import GaussianFourierFeatures, SinusoidalEmbedding, TimeEmbedding
from offdiff.nets.ensemble import EnsembleMLP, VectorizedLayerNorm, VectorizedLinear
from offdiff.nets.mlp import ResidualBlock, ResidualMLP, mlp
from offdiff.nets.targets import frozen_copy, hard_update_, polyak_update_

__all__ = [
    "EnsembleMLP",
    "GaussianFourierFeatures",
    "ResidualBlock",
    "ResidualMLP",
    "SinusoidalEmbedding",
    "TimeEmbedding",
    "VectorizedLayerNorm",
    "VectorizedLinear",
    "frozen_copy",
    "hard_update_",
    "polyak_update_",
    "mlp",
]

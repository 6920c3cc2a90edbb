"""Network building blocks: MLPs, time embeddings, vectorized ensembles, target-network updates, policies."""

from offdiff.nets.embeddings import GaussianFourierFeatures, SinusoidalEmbedding, TimeEmbedding
from offdiff.nets.ensemble import EnsembleMLP, VectorizedLayerNorm, VectorizedLinear
from offdiff.nets.mlp import ResidualBlock, ResidualMLP, mlp
from offdiff.nets.policies import TanhGaussian, TanhGaussianPolicy, softmax_choice
from offdiff.nets.targets import frozen, frozen_copy, hard_update_, polyak_update_

__all__ = [
    "EnsembleMLP",
    "GaussianFourierFeatures",
    "ResidualBlock",
    "ResidualMLP",
    "SinusoidalEmbedding",
    "TanhGaussian",
    "TanhGaussianPolicy",
    "TimeEmbedding",
    "VectorizedLayerNorm",
    "VectorizedLinear",
    "frozen",
    "frozen_copy",
    "hard_update_",
    "polyak_update_",
    "mlp",
    "softmax_choice",
]

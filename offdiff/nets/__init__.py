"""Network building blocks: MLPs, time embeddings, vectorized ensembles, target-network updates, policies."""

from offdiff.nets.activations import Mish, mish, mish_one_exp
from offdiff.nets.chunks import in_row_chunks, rows_per_call
from offdiff.nets.embeddings import GaussianFourierFeatures, SinusoidalEmbedding, TimeEmbedding
from offdiff.nets.ensemble import EnsembleMLP, VectorizedLayerNorm, VectorizedLinear
from offdiff.nets.mlp import ResidualBlock, ResidualMLP, mlp
from offdiff.nets.policies import TanhGaussian, TanhGaussianPolicy, softmax_choice
from offdiff.nets.targets import frozen, frozen_copy, hard_update_, polyak_update_

__all__ = [
    "EnsembleMLP",
    "GaussianFourierFeatures",
    "Mish",
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
    "in_row_chunks",
    "polyak_update_",
    "rows_per_call",
    "mish",
    "mish_one_exp",
    "mlp",
    "softmax_choice",
]

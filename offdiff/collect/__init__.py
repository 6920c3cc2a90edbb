"""Local D4RL-style datasets (`offdiff data collect`): SAC behaviour policies, rollouts, Minari writing."""

from offdiff.collect.collection import KINDS, Collected, CollectRequest, collect, parse_kinds, request_from_args
from offdiff.collect.sac import SAC, SACConfig

__all__ = ["KINDS", "SAC", "Collected", "CollectRequest", "SACConfig", "collect", "parse_kinds", "request_from_args"]

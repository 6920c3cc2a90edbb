"""Local D4RL-style datasets (`offdiff data collect`): SAC behaviour policies, rollouts, Minari writing."""

from offdiff.lazy import lazy_exports

__all__ = ["KINDS", "SAC", "Collected", "CollectRequest", "SACConfig", "collect", "parse_kinds", "request_from_args"]
__getattr__ = lazy_exports(__name__, {  # imported at first use: `offdiff --help` registers `collect` without torch
    **dict.fromkeys(["KINDS", "Collected", "CollectRequest", "collect", "parse_kinds", "request_from_args"],
                    "offdiff.collect.collection"),
    "SAC": "offdiff.collect.sac", "SACConfig": "offdiff.collect.sac",
})

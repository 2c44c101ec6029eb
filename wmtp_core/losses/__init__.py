"""Training losses: the weighted multi-token-prediction cross-entropy (naive and memory-flat sequential)."""

from wmtp_core.losses.linear_ce import LogitsHook, linear_ce, weighted_linear_ce
from wmtp_core.losses.mtp import (
    IGNORE_INDEX,
    HeadReduction,
    LossImpl,
    MTPLossOutput,
    WeightFn,
    count_valid_labels,
    per_token_ce,
    target_weights,
    weighted_mtp_loss,
)

__all__ = [
    "IGNORE_INDEX",
    "HeadReduction",
    "LogitsHook",
    "LossImpl",
    "MTPLossOutput",
    "WeightFn",
    "count_valid_labels",
    "linear_ce",
    "per_token_ce",
    "target_weights",
    "weighted_linear_ce",
    "weighted_mtp_loss",
]

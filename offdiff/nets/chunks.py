"""Row-chunked evaluation of large no-grad batches (acting on envs × candidates) for cache locality on CPU."""

from __future__ import annotations

from collections.abc import Callable

import torch

CPU_ROWS = 2048  # rows per call on CPU: a 256-wide critic's activations stay in cache (1.7× faster at 10240 rows)


def rows_per_call(device: torch.device) -> int | None:
    """How many rows to evaluate at once on `device`: `CPU_ROWS` on CPU, everything at once on an accelerator."""
    return CPU_ROWS if device.type == "cpu" else None


@torch.no_grad()
def in_row_chunks(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, rows: int | None) -> torch.Tensor:
    """fn(*inputs) for a row-wise `fn` ((B, ...) inputs → (B, ...) output), `rows` rows at a time (None: all).

    The result equals one call up to float rounding (a matmul's blocking may depend on the row count).
    """
    total = inputs[0].shape[0]
    if rows is None or total <= rows:
        return fn(*inputs)
    return torch.cat([fn(*(x[start:start + rows] for x in inputs)) for start in range(0, total, rows)])

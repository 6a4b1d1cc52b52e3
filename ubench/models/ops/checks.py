"""Argument and input-size checks shared by the model factories.

A wrong input size otherwise surfaces deep inside the network as a torch.cat shape mismatch;
these turn it (and a mistyped factory option) into a UbenchError that names the fix.
"""

from __future__ import annotations

import torch

from ubench.errors import UbenchError


def reject_unknown_kwargs(model: str, kwargs: dict) -> None:
    """Fail on factory options the model does not have instead of silently ignoring them."""
    if kwargs:
        raise UbenchError(
            f"model {model!r} got unknown option(s): {', '.join(sorted(kwargs))}",
            f"{model} takes only num_classes and in_channels",
        )


def check_spatial_size(model: str, x: torch.Tensor, multiple: int) -> None:
    """Require a (B, C, H, W) input with H and W divisible by the model's total stride."""
    if x.dim() != 4:
        raise UbenchError(
            f"model {model!r} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}",
            "add the batch/channel dimensions (e.g. x[None] for a single image)",
        )
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise UbenchError(
            f"model {model!r} needs H and W divisible by {multiple}, got {h}x{w}",
            f"resize or pad the input to a multiple of {multiple} (the protocol uses 256x256)",
        )


def check_fixed_size(model: str, x: torch.Tensor, size: int) -> None:
    """Require a (B, C, size, size) input: positional embeddings exist for that grid only."""
    if x.dim() != 4:
        raise UbenchError(
            f"model {model!r} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}",
            "add the batch/channel dimensions (e.g. x[None] for a single image)",
        )
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        raise UbenchError(
            f"model {model!r} only takes {size}x{size} inputs (positional embeddings), got {h}x{w}",
            f"resize the input to {size}x{size}",
        )

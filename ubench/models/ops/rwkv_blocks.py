"""Vision-RWKV building blocks shared by the RWKV models (rwkv_unet, u_rwkv, zig_rir).

A Vision-RWKV layer has two halves (Duan et al., "Vision-RWKV", 2024): a *spatial mix* (keys,
values and a sigmoid receptance gate around the bidirectional WKV of ``ops/wkv.py``) and a
*channel mix* (a squared-ReLU MLP gated by a receptance). Both first blend each token with a
"shifted" copy of the map (token shift); the models differ only in which shift they use and in
how the blend weights start, so those are arguments here. Tokens are (B, T, C) with T = H * W in
row-major order; ``hw`` gives the map size so a shift can go back to 2-D.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ubench.models.ops.common import map_to_tokens, tokens_to_map
from ubench.models.ops.wkv import bi_wkv

ShiftFn = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def q_shift_map(x: torch.Tensor, shift: int = 1, gamma: float = 0.25) -> torch.Tensor:
    """Vision-RWKV's quad-directional shift of a (B, C, H, W) map, zero-filled at the border.

    Four slices of ``gamma * C`` channels see their neighbour ``shift`` pixels to the left, right,
    above and below; the remaining channels are left as they are.
    """
    c = x.shape[1]
    g = int(c * gamma)
    out = torch.zeros_like(x)
    s = shift
    out[:, 0:g, :, s:] = x[:, 0:g, :, :-s]  # from the left
    out[:, g : 2 * g, :, :-s] = x[:, g : 2 * g, :, s:]  # from the right
    out[:, 2 * g : 3 * g, s:, :] = x[:, 2 * g : 3 * g, :-s, :]  # from above
    out[:, 3 * g : 4 * g, :-s, :] = x[:, 3 * g : 4 * g, s:, :]  # from below
    out[:, 4 * g :] = x[:, 4 * g :]
    return out


def q_shift_tokens(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``q_shift_map`` for tokens."""
    return map_to_tokens(q_shift_map(tokens_to_map(x, *hw)))


class TokenMix(nn.Module):
    """Per-channel blends ``x * mu + shifted * (1 - mu)``, one learnable ``mu`` per stream.

    ``init`` maps a stream name ('k', 'v', 'r') to the initial (C,) ``mu``; each becomes the
    parameter ``mix_<name>``. With ``init=None`` there is no blend: every stream is the shifted
    map itself (Zig-RiR replaces the tokens by their shift).
    """

    def __init__(self, dim: int, init: dict[str, torch.Tensor] | None, streams: tuple[str, ...]):
        super().__init__()
        self.streams = streams
        self.blend = init is not None
        if self.blend:
            for s in streams:
                self.register_parameter(f"mix_{s}", nn.Parameter(init[s].reshape(1, 1, dim).clone()))

    def forward(self, x: torch.Tensor, shifted: torch.Tensor) -> list[torch.Tensor]:
        if not self.blend:
            return [shifted] * len(self.streams)
        out = []
        for s in self.streams:
            mu = getattr(self, f"mix_{s}")
            out.append(x * mu + shifted * (1 - mu))
        return out


def constant_mix(dim: int, value: float, streams: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """All blend weights start at ``value`` (RWKV-UNet uses 0.5)."""
    return {s: torch.full((dim,), value) for s in streams}


class SpatialMix(nn.Module):
    """Vision-RWKV spatial mix: ``out(sigmoid(r) * norm(BiWKV(decay/T, first/T, k, v)))``.

    ``shift`` makes the shifted tokens that ``k``, ``v`` and ``r`` blend with; ``mix_init`` gives
    the blend weights' initial values; ``decay`` and ``first`` the initial per-channel spatial
    decay and bonus (both divided by T at run time, as every U-Bench RWKV model does).
    """

    def __init__(
        self,
        dim: int,
        shift: ShiftFn,
        mix_init: dict[str, torch.Tensor] | None,
        decay: torch.Tensor,
        first: torch.Tensor,
        key_norm: bool = True,
    ):
        super().__init__()
        self.shift = shift
        self.spatial_decay = nn.Parameter(decay.clone())
        self.spatial_first = nn.Parameter(first.clone())
        self.mix = TokenMix(dim, mix_init, ("k", "v", "r"))
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.key_norm = nn.LayerNorm(dim) if key_norm else nn.Identity()
        self.output = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        xk, xv, xr = self.mix(x, self.shift(x, hw))
        k, v = self.key(xk), self.value(xv)
        T = x.shape[1]
        y = bi_wkv(self.spatial_decay / T, self.spatial_first / T, k, v)
        return self.output(torch.sigmoid(self.receptance(xr)) * self.key_norm(y))


class ChannelMix(nn.Module):
    """Vision-RWKV channel mix: ``sigmoid(r(x)) * value(norm(relu(key(x))^2))``."""

    def __init__(
        self,
        dim: int,
        hidden_rate: int,
        shift: ShiftFn,
        mix_init: dict[str, torch.Tensor] | None,
        key_norm: bool = True,
    ):
        super().__init__()
        hidden = hidden_rate * dim
        self.shift = shift
        self.mix = TokenMix(dim, mix_init, ("k", "r"))
        self.key = nn.Linear(dim, hidden, bias=False)
        self.key_norm = nn.LayerNorm(hidden) if key_norm else nn.Identity()
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        xk, xr = self.mix(x, self.shift(x, hw))
        k = self.key_norm(torch.relu(self.key(xk)).square())
        return torch.sigmoid(self.receptance(xr)) * self.value(k)

"""Wrapping MONAI networks as ubench models (UNETR, SwinUNETR).

MONAI is imported only inside the factories (it is heavy), but its transformer blocks need the
optional package ``einops`` at construction time. ``require_packages`` is called at the top of a
wrapper module so that, without them, the module fails to import with an ImportError naming the
package (the registry then lists the model as unavailable) instead of failing inside MONAI.
"""

from __future__ import annotations

from importlib.util import find_spec

import torch
import torch.nn as nn


def require_packages(model: str, *packages: str) -> None:
    """Raise ImportError naming every missing package (without importing any of them)."""
    missing = [p for p in packages if find_spec(p) is None]
    if missing:
        raise ImportError(
            f"model {model!r} wraps MONAI and needs: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )


class MonaiNet(nn.Module):
    """A MONAI network held as ``net``: its parameters keep the ``net.`` prefix that ubench's
    checkpoints (and the ``unused_params`` lists) have always used. The input size is checked by
    the registry, as for every model."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

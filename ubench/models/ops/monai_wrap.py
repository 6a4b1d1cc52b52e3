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

from ubench.models.ops.checks import check_spatial_size
from ubench.models.ops.vit_hybrid import check_fixed_size


def require_packages(model: str, *packages: str) -> None:
    """Raise ImportError naming every missing package (without importing any of them)."""
    missing = [p for p in packages if find_spec(p) is None]
    if missing:
        raise ImportError(
            f"model {model!r} wraps MONAI and needs: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )


class SizeCheckedNet(nn.Module):
    """Run ``net`` after checking the input size, so a bad size is a UbenchError, not a MONAI one.

    ``fixed_size`` (square inputs of exactly that size) or ``multiple`` (H, W divisible by it).
    """

    def __init__(self, name: str, net: nn.Module, fixed_size: int | None = None, multiple: int = 32):
        super().__init__()
        self.name, self.net, self.fixed_size, self.multiple = name, net, fixed_size, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_size is not None:
            check_fixed_size(self.name, x, self.fixed_size)
        else:
            check_spatial_size(self.name, x, self.multiple)
        return self.net(x)

"""Small torch modules the pytorch backend tests save as TorchScript / torch.export files (kept in a
file of their own: TorchScript compiles from source)."""

from __future__ import annotations

import torch


class AddSub(torch.nn.Module):
    def forward(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return first + second, first - second


class ScaleByName(torch.nn.Module):
    """Returns a dict, and takes arguments whose order differs from the config's."""

    def forward(self, offset: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"scaled": image * 2 + offset}

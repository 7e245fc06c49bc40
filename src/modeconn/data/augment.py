"""Augmentation on batch tensors, on the batch's device: the paper's random crop and flip."""
from __future__ import annotations

import torch


class CropFlip:
    """The paper's augmentation on a batch tensor: random 32x32 crop of the 4-pixel zero-padded image, random flip.

    Padding uses the normalised value of a black pixel, as padding the raw image does; each image
    draws its own offset (uniform over 9x9) and flip (p = 0.5), on the batch's device.
    """

    def __init__(self, pad: int = 4, pad_value: torch.Tensor | None = None):
        self.pad, self.pad_value = pad, pad_value

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.pad
        fill = (self.pad_value if self.pad_value is not None else torch.zeros(c)).to(x.device, x.dtype)
        padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p:p + h, p:p + w] = x
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        flip = torch.rand(b, generator=generator).to(x.device) < 0.5
        rows = oy[:, None] + torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device).expand(b, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]
        bi = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

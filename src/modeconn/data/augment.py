"""Augmentation on batch tensors, on the batch's device: the paper's random crop and flip."""
from __future__ import annotations

import torch


class CropFlip:
    """The paper's augmentation on a batch tensor: random 32x32 crop of the 4-pixel zero-padded image, random flip.

    Padding uses the normalised value of a black pixel, as padding the raw image does; each image
    draws its own offset (uniform over 9x9) and flip (p = 0.5). The draws come from the CPU
    generator (the same on any device, so CPU and GPU runs agree) and reach a GPU in one pinned,
    non-blocking copy per batch; the padding value is kept on each device it meets.
    """

    def __init__(self, pad: int = 4, pad_value: torch.Tensor | None = None):
        self.pad, self.pad_value = pad, pad_value
        self._fill: dict = {}  # (device, dtype, channels) -> padding value there

    def fill(self, c: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The padding value per channel, on `device` (copied there once)."""
        key = (device, dtype, c)
        if key not in self._fill:
            value = self.pad_value if self.pad_value is not None else torch.zeros(c, device="cpu")
            self._fill[key] = value.to(device, dtype)
        return self._fill[key]

    def draws(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """(3, b) integers: row offset, column offset and flip of each image, on `device`."""
        span = 2 * self.pad + 1
        oy = torch.randint(0, span, (b,), generator=generator, device="cpu")
        ox = torch.randint(0, span, (b,), generator=generator, device="cpu")
        flip = torch.rand(b, generator=generator, device="cpu") < 0.5
        host = torch.stack([oy, ox, flip.long()])
        if device.type == "cuda":  # pinned memory lets the copy overlap: the CPU runs ahead of the GPU
            return host.pin_memory().to(device, non_blocking=True)
        return host.to(device)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.pad
        padded = self.fill(c, x.device, x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p:p + h, p:p + w] = x
        oy, ox, flip = self.draws(b, x.device, generator)
        rows = oy[:, None] + torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device).expand(b, w)
        cols = torch.where(flip[:, None].bool(), cols.flip(1), cols) + ox[:, None]
        bi = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

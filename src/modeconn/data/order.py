"""The seeded orders examples are read in, one definition for data in memory (`Batches`) and streamed data
(`StreamedData`): a streamed analysis equals the in-memory one because both draw their orders here."""
from __future__ import annotations

import torch

SUBSET_OFFSET = 10_007  # fixed subsets and the BatchNorm order draw apart from the epochs' shuffles (seed + epoch)


def fixed_order(n: int, seed: int) -> torch.Tensor:
    """A permutation of range(n), on the CPU, that depends on `seed` only: its first k entries are the random
    subset of k examples an evaluation measures (`--train-samples`, `--bn-samples`), and the whole of it the order
    BatchNorm statistics are recomputed in (never the file order: class-sorted files give one-class batches)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + SUBSET_OFFSET), device="cpu")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one training epoch: its shuffle (`epoch_shuffle`), then any augmentation drawn after it.
    A function of (seed, epoch), so a run resumed at an epoch reads what the whole run read."""
    return torch.Generator().manual_seed(seed + epoch)


def epoch_shuffle(n: int, generator: torch.Generator) -> torch.Tensor:
    """The permutation of range(n) one training epoch reads, drawn on the CPU (the same on every device)."""
    return torch.randperm(n, generator=generator, device="cpu")


def worker_seed(seed: int, epoch: int) -> int:
    """The seed of a DataLoader's generator for one epoch: its workers' random state (augmentation drawn in a
    worker) follows (seed, epoch), apart from the epoch's shuffle."""
    return seed + 7_919 * (epoch + 1)

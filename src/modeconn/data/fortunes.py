"""English text: the fortunes of Debian's `fortunes` package, as byte-level token blocks for language modeling.

The corpus is one file per topic (art, computers, science, ...), each a list of documents (fortunes) separated by
lines holding a single `%`. A dataset name selects topics: `fortunes` (all), `fortunes/only=science,art`,
`fortunes/except=science`, and may set the block length: `fortunes/block=64`, `fortunes/except=science/block=64`.

Each document goes to the test split or the training split by a seeded draw of its own topic (10% of each topic's
documents are test), so a topic's split is the same whichever topics are selected with it: pre-training on
`fortunes/except=science` and fine-tuning on `fortunes/only=science` never see each other's test documents, and
the held-out topic's test set is one set. Each split is its documents joined in file order (topics in name order,
the `%` separators kept), read as bytes (256 symbols: no tokenizer, nothing downloaded) and cut into
non-overlapping blocks of `block` tokens; the tail shorter than a block is dropped.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import ModeconnError, param
from ..tasks import LanguageModeling
from .datasets import Dataset

FORTUNES_DIR = "/usr/share/games/fortunes"
BLOCK = 128  # tokens per example: a byte-level GPT's context
TEST_FRACTION = 0.1
VOCABULARY = 256  # bytes
SEPARATOR = b"%\n"


def parse_name(name: str) -> dict:
    """{"only": [...] or None, "except": [...], "block": int} from a fortunes dataset name; raises ModeconnError
    (one line) for anything else."""
    head, *parts = name.split("/")
    if head != "fortunes":
        raise ModeconnError(f"{name!r} is not a fortunes dataset name (fortunes, fortunes/only=TOPIC,..., "
                            "fortunes/except=TOPIC,..., fortunes/block=N)")
    spec: dict = {"only": None, "except": [], "block": BLOCK}
    given: set[str] = set()
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or key not in spec or not value:
            raise ModeconnError(f"dataset {name!r}: {part!r} is not only=TOPIC,..., except=TOPIC,... or block=N")
        if key in given:
            raise ModeconnError(f"dataset {name!r} gives {key}= twice; give it once")
        given.add(key)
        if key == "block":
            if not value.isdigit() or not 2 <= int(value) <= 1 << 20:
                raise ModeconnError(f"dataset {name!r}: block must be a whole number of tokens >= 2, got {value!r}")
            spec["block"] = int(value)
        else:
            spec[key] = value.split(",")
    if spec["only"] is not None and spec["except"]:
        raise ModeconnError(f"dataset {name!r}: give only= or except=, not both")
    return spec


def topics(folder: Path) -> list[str]:
    """The corpus's topic files in `folder` (plain files without a suffix: not the .dat indexes, not the .u8
    links), by name."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink() and "." not in p.name)


def documents(path: Path) -> list[bytes]:
    """The documents of one topic file, each ending with its newline, without the `%` lines between them."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModeconnError(f"cannot read {path}: {exc.strerror}; reinstall the fortunes package") from None
    return [d for d in raw.split(b"\n" + SEPARATOR) if d.strip()]


def is_test(topic: str, count: int) -> np.ndarray:
    """(count,) bool: which of a topic's documents are test, drawn with a seed of the topic's name (CRC-32), so the
    draw is the same on every machine and whichever topics are selected with it."""
    order = np.random.default_rng(zlib.crc32(topic.encode())).permutation(count)
    test = np.zeros(count, dtype=bool)
    test[order[:int(round(TEST_FRACTION * count))]] = True
    return test


def load_fortunes(name: str = "fortunes", data_dir: str | os.PathLike | None = None) -> Dataset:
    """The fortunes corpus (or the topics `name` selects) as a language-modeling Dataset: train and test blocks of
    token ids, (N, block) int64 in 0..255, each its own labels (`modeconn.tasks.LanguageModeling`).

    Raises ModeconnError (one line) for a missing corpus (saying how to install it), an unknown topic, or a split
    shorter than one block."""
    spec = parse_name(name)
    folder = Path(data_dir or FORTUNES_DIR)
    if not folder.is_dir() or not topics(folder):
        raise ModeconnError(f"no fortunes corpus at {folder}: install it with `apt-get install fortunes` (Debian) or "
                            f"pass {param('data_dir')} a folder of fortune files")
    known = topics(folder)
    chosen = spec["only"] if spec["only"] is not None else known
    unknown = [t for t in (spec["only"] or []) + spec["except"] if t not in known]
    if unknown:
        raise ModeconnError(f"dataset {name!r}: no topic {', '.join(map(repr, unknown))} in {folder}; the topics are "
                            f"{', '.join(known)}")
    chosen = [t for t in sorted(set(chosen)) if t not in spec["except"]]
    if not chosen:
        raise ModeconnError(f"dataset {name!r} selects no topic; leave at least one")
    splits: dict[bool, list[bytes]] = {False: [], True: []}
    for topic in chosen:
        docs = documents(folder / topic)
        for doc, test in zip(docs, is_test(topic, len(docs))):
            splits[bool(test)].append(doc + b"\n" + SEPARATOR)
    block = spec["block"]
    x = {}
    for test, label in ((False, "training"), (True, "test")):
        text = b"".join(splits[test])
        count = len(text) // block
        if count == 0:
            raise ModeconnError(f"dataset {name!r}: the {label} text is {len(text)} bytes, shorter than one block of "
                                f"{block} tokens; select more topics or a shorter block (/block=N)")
        tokens = np.frombuffer(text, dtype=np.uint8)[:count * block].astype(np.int64)
        x[test] = torch.from_numpy(tokens.reshape(count, block))
    # a language model's labels are its inputs (the task shifts them by one): one tensor serves as both
    return Dataset(name, x[False], x[False], x[True], x[True], VOCABULARY, task=LanguageModeling())

"""Hugging Face transformers by `--model hf:PATH`: built from a local config.json, or loaded from a folder
`save_pretrained` wrote. Nothing is downloaded (`local_files_only`, and the hub is set offline), no remote code
runs (`trust_remote_code` is never set, and a config that needs custom code is refused), and weights are read
from safetensors only (a pickled pytorch_model.bin is refused)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModeconnError
from ..object_ref import one_line

HF_EXTRA = "pip install 'modeconn[hf]' (transformers)"
# the configs modeconn ships (the repository's configs/ holds the same files): `hf:gpt2-tiny` names one
SHIPPED = Path(__file__).resolve().parent.parent / "configs"


def normalise(spec: str) -> str:
    """`hf:SPEC` as a run records it: a shipped config's name as it is, a path made absolute (a run is read back
    from any folder)."""
    if not Path(spec).expanduser().exists() and (SHIPPED / f"{spec}.json").is_file() and "/" not in spec:
        return spec
    return str(Path(spec).expanduser().resolve())


def config_path(spec: str) -> Path:
    """The config.json `hf:SPEC` names: a file, a folder holding config.json, or a shipped config's name
    (`gpt2-tiny`, `bert-tiny`). Raises ModeconnError (one line) where there is none."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    elif not path.exists() and not spec.endswith(".json") and "/" not in spec and (SHIPPED / f"{spec}.json").is_file():
        path = SHIPPED / f"{spec}.json"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.json")))
        raise ModeconnError(f"--model hf:{spec}: no config.json there; give a config file, a folder save_pretrained "
                            f"wrote, or a shipped config ({shipped})")
    return path.resolve()


def read_config(spec: str) -> tuple[dict, Path]:
    """(config dict, its file), refused in one line where transformers could not build it safely."""
    path = config_path(spec)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModeconnError(f"--model hf:{spec}: {path} is not a JSON config ({one_line(exc)})") from None
    if not isinstance(config, dict):
        raise ModeconnError(f"--model hf:{spec}: {path} holds a JSON {type(config).__name__}, not a config object")
    if "auto_map" in config:
        raise ModeconnError(f"--model hf:{spec}: {path} needs custom code (its auto_map names "
                            f"{', '.join(map(str, config['auto_map']))}), and modeconn never runs remote code; use an "
                            "architecture transformers ships")
    return config, path


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: every load below is local_files_only too
    try:
        import transformers
    except ImportError as exc:
        raise ModeconnError(f"--model hf:... needs transformers, which cannot be imported ({one_line(exc)}): "
                            f"{HF_EXTRA}") from None
    transformers.logging.set_verbosity_error()  # its warnings (e.g. an untied head) are not modeconn's to print
    transformers.logging.disable_progress_bar()  # loading weights: --quiet means quiet
    return transformers


def architecture(spec: str):
    """The transformers model class a config names (`architectures[0]`, e.g. GPT2LMHeadModel), checked against
    transformers' own classes. Raises ModeconnError (one line) for an unknown model_type or architecture."""
    config, path = read_config(spec)
    transformers = _transformers()
    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ModeconnError(f"--model hf:{spec}: transformers {transformers.__version__} does not know model_type "
                            f"{model_type!r} (from {path}); give a config of an architecture it ships")
    names = config.get("architectures")
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        raise ModeconnError(f"--model hf:{spec}: {path} must name one model class in architectures (e.g. "
                            "[\"GPT2LMHeadModel\"]), got " + repr(names))
    cls = getattr(transformers, names[0], None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ModeconnError(f"--model hf:{spec}: transformers has no model class {names[0]!r} (from {path}'s "
                            "architectures)")
    return cls, path


def build(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model `hf:SPEC` names, wrapped to take one tensor (`HuggingFaceModel`): built from the config with
    random weights (seeded by torch's global RNG), or loaded from the folder's model.safetensors where it has one.

    A classifier's head is sized for the data (`num_labels = num_classes`) when built from a config; a language
    model's output width is its vocab_size, which `create_model` checks against the data's num_classes. Raises
    ModeconnError (one line) for a missing or unsafe config, pickled weights, or weights transformers cannot
    load."""
    cls, path = architecture(spec)
    transformers = _transformers()
    folder = path.parent
    weights = folder / "model.safetensors"
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    config.use_cache = False  # a key-value cache in the outputs is state between calls, not a function of weights
    if not weights.is_file() and (folder / "pytorch_model.bin").is_file() and path.name == "config.json":
        raise ModeconnError(f"--model hf:{spec}: {folder} holds pickled weights (pytorch_model.bin), which modeconn "
                            "never loads; save them as safetensors (save_pretrained(..., safe_serialization=True))")
    try:
        if weights.is_file() and path.name == "config.json":
            model = cls.from_pretrained(str(folder), config=config, local_files_only=True, use_safetensors=True,
                                        trust_remote_code=False)
        else:
            if hasattr(config, "num_labels") and not _is_language_model(cls):
                config.num_labels = num_classes
            model = cls(config)
    except Exception as exc:  # a config of another architecture, corrupt or mismatched safetensors: how, in one line
        raise ModeconnError(f"--model hf:{spec}: transformers could not build {cls.__name__} "
                            f"({one_line(exc)[:200]})") from None
    return HuggingFaceModel(model)


def _is_language_model(cls) -> bool:
    return cls.__name__.endswith(("LMHeadModel", "ForCausalLM", "ForMaskedLM"))


class HuggingFaceModel(nn.Module):
    """A transformers model called with one tensor, so every analysis batches, shards and moves its inputs like
    any other: token ids (N, L), or ids and attention mask stacked as (N, 2, L) (`modeconn.tasks.token_inputs`).
    Returns the model's own output (a `ModelOutput`), which the task reads (`modeconn.tasks.model_output`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if x.dim() == 3:
            return self.model(input_ids=x[:, 0], attention_mask=x[:, 1])
        return self.model(input_ids=x)

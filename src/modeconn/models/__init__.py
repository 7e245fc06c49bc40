"""A registry of models with one constructor: create_model(name, input_shape, num_classes, **kwargs)."""
from __future__ import annotations

import functools
import importlib
import inspect
import math
from typing import Literal

import torch
from torch import nn

from ..errors import ModeconnError, param
from ..object_ref import is_reference, one_line, resolve
from ..tasks import CLASSIFICATION, Task, model_output
from . import huggingface

MODELS: dict = {}  # name -> constructor(input_shape, num_classes, **kwargs)


def register(name: str, **fixed):
    """Add a model class to the registry under `name`; `fixed` constructor arguments make a named variant."""
    def wrap(cls):
        MODELS[name] = functools.partial(cls, **fixed) if fixed else cls
        return cls
    return wrap


def create_model(name: str, input_shape, num_classes: int, task: Task = CLASSIFICATION,
                 example: torch.Tensor | None = None, **kwargs) -> nn.Module:
    """Build a model for inputs of `input_shape` (no batch dim) and `num_classes` outputs: a registered name;
    `torchvision:NAME` or `timm:NAME` (the library's architecture, randomly initialised: nothing is downloaded);
    `hf:PATH`, a Hugging Face transformers model from a local config or save_pretrained folder
    (`models.huggingface`); or your own builder named `package.module:callable` (imported from the Python path),
    which gets, of `input_shape` (a tuple) and `num_classes`, those its signature takes, and `kwargs`.

    Raises ModeconnError (one line) for an unknown name, a library that is not installed, a builder that cannot be
    imported or returns no nn.Module, or a model whose output for one example is not the `task`'s
    (`Task.output_shape`: (num_classes,) for classification, (length, vocabulary) for language modeling), run on
    `example` (two of the data's inputs, so token ids stay integers; zeros of `input_shape` when None)."""
    shape = tuple(input_shape)
    if isinstance(name, str) and name.startswith(HF_PREFIX):
        if kwargs:
            raise ModeconnError(f"--model {name} takes no constructor arguments (got {kwargs}): its config holds them")
        model = huggingface.build(name.removeprefix(HF_PREFIX), shape, num_classes)
        probe = torch.zeros(2, *shape, dtype=torch.long, device="cpu") if example is None else example[:2].cpu()
        try:
            with torch.no_grad():
                out = model.eval()(probe)
        except (ValueError, RuntimeError, IndexError, AttributeError, TypeError, AssertionError) as exc:
            # token ids past the vocabulary or blocks past the positions (IndexError), images (RuntimeError), a
            # classifier without a padding token (ValueError)
            raise ModeconnError(f"model {name!r} cannot take this data's inputs of shape {shape} "
                                f"({one_line(exc)[:160]}); check its vocab_size and positions against the data, "
                                "or choose a model for this dataset") from None
        _check_output(name, out, shape, num_classes, task)
        return model.train()
    builder = _builder(name)
    _check_fits(name, builder, shape, num_classes, task, example, kwargs)
    return builder(shape, num_classes, **kwargs)


HF_PREFIX = "hf:"


def check_model_name(name: str) -> None:
    """Refuse (ModeconnError, one line) a model name nothing can build: not registered, a library model of a library
    that is not installed or has no such architecture, a reference that cannot be imported, an `hf:` path without
    a config transformers knows. Builds nothing."""
    if isinstance(name, str) and name.startswith(HF_PREFIX):
        huggingface.architecture(name.removeprefix(HF_PREFIX))
    else:
        _builder(name)


def _builder(name: str):
    """A constructor(input_shape, num_classes, **kwargs) for a registered name, a library's model or a
    package.module:callable."""
    library = name.split(":", 1)[0] if isinstance(name, str) and ":" in name else None
    if library in LIBRARIES:
        return _library_builder(library, name.split(":", 1)[1])
    if not is_reference(name):
        if name not in MODELS:
            raise ModeconnError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}, torchvision:NAME "
                                "or timm:NAME, or name your own builder as package.module:callable")
        return MODELS[name]
    user = resolve(name, param("model"))
    if not callable(user):
        raise ModeconnError(f"model {name} is a {type(user).__name__}, not a callable that returns an nn.Module")
    try:
        params = dict(inspect.signature(user).parameters)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):  # a builtin without a signature: give it both
        params, takes_any = {}, True

    def build(shape, num_classes, **kwargs):
        given = {k: v for k, v in (("input_shape", shape), ("num_classes", num_classes))
                 if takes_any or k in params}
        try:
            model = user(**given, **kwargs)
        except Exception as exc:  # the user's code failed: say how, in one line, not as a shape problem
            raise BuildFailed(f"model {name}: building it failed: {one_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise ModeconnError(f"model {name} returned a {type(model).__name__}, not an nn.Module")
        return model
    return build


# Models by name from torchvision and timm (the `vision` extra). Only the architecture is built, with random
# weights: pretrained weights are never requested, so nothing is downloaded; a run's weights come from training.
LIBRARIES = {"torchvision": "torchvision", "timm": "timm"}
VISION_EXTRA = "pip install 'modeconn[vision]' (torchvision and timm)"
AUXILIARY_HEADS = ("googlenet", "inception_v3")  # torchvision classifiers built without their auxiliary heads


def _library_builder(library: str, arch: str):
    try:
        module = importlib.import_module(library)
    except ImportError as exc:
        raise ModeconnError(f"--model {library}:{arch} needs {library}, which cannot be imported ({one_line(exc)}): "
                            f"{VISION_EXTRA}") from None
    if library == "torchvision":
        importlib.import_module("torchvision.models")
        # the classifiers only: detection and segmentation models are not (batch, classes) functions, and their
        # builders fetch pretrained backbones even with weights=None
        known = set(module.models.list_models(module=module.models))
    else:
        known = set(module.list_models())
    if arch not in known:
        where = "torchvision.models.list_models(module=torchvision.models)" if library == "torchvision" else \
            "timm.list_models()"
        raise ModeconnError(f"{library} has no classifier {arch!r}: {where} gives the names")

    def build(shape, num_classes, **kwargs):
        channels = shape[0] if len(shape) == 3 else None
        if library == "timm":  # timm builds the stem for any number of input channels
            return module.create_model(arch, pretrained=False, num_classes=num_classes,
                                       **({"in_chans": channels} if channels is not None else {}), **kwargs)
        if arch in AUXILIARY_HEADS:  # in train mode these return a tuple with the auxiliary heads' logits
            kwargs = {"aux_logits": False, **kwargs}
        model = module.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        return GrayToRGB(model) if _repeats_gray(f"{library}:{arch}", shape) else model
    return build


class GrayToRGB(nn.Module):
    """A torchvision model made for RGB images, fed gray ones by repeating the channel three times, as
    torchvision's `transforms.Grayscale(num_output_channels=3)` does. run.json's model records it (`input_note`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.repeat(1, 3, 1, 1))


def _repeats_gray(name: str, input_shape) -> bool:
    """Whether the model `name` builds for these inputs is a torchvision model fed gray images through GrayToRGB."""
    shape = tuple(input_shape)
    return isinstance(name, str) and name.startswith("torchvision:") and len(shape) == 3 and shape[0] == 1


def input_note(name: str, input_shape) -> str | None:
    """How a model's inputs are adapted before it sees them, for the run's record (None: they are not)."""
    if _repeats_gray(name, input_shape):
        return "gray images repeated to 3 channels, as torchvision's Grayscale(num_output_channels=3)"
    return None


class BuildFailed(ModeconnError):
    """A user's builder raised while it was called (not a model unfit for the data)."""


def _check_fits(name: str, builder, shape: tuple, num_classes: int, task: Task, example: torch.Tensor | None,
                kwargs: dict) -> None:
    """Refuse a model that cannot take inputs of this shape (an image model on 1-D data, say): built
    and run once on the meta device, which costs no memory and no arithmetic. A forward that reads a value
    (an `if` on a tensor, `float(...)`, `nonzero`) cannot run there, so any failure on the meta device is
    checked again with a real forward on the CPU: only its error is reported. The probe is `example` (the data's
    own inputs), else a batch of two zeros."""
    probe = torch.zeros(2, *shape, device="cpu") if example is None else example[:2].cpu()
    try:
        with torch.device("meta"):
            out = builder(shape, num_classes, **kwargs).eval()(probe.to("meta"))
    except (ValueError, RuntimeError, IndexError, NotImplementedError, AssertionError, BuildFailed):
        # meta execution also fails on data-dependent code, for reasons other than shape; a constructor's
        # TypeError (keyword arguments it does not take) is not caught: the caller names those
        try:
            with torch.no_grad():
                out = builder(shape, num_classes, **kwargs).eval()(probe)
        except (ValueError, RuntimeError, IndexError, AssertionError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise ModeconnError(f"model {name!r} cannot take inputs of shape {shape} ({reason}); choose a model "
                                "for this dataset (see `modeconn train --help`)") from None
    _check_output(name, out, shape, num_classes, task)


def _check_output(name: str, out, shape: tuple, num_classes: int, task: Task) -> None:
    """Refuse (one line) a model whose output for a batch of two (read as the task reads it) is not the task's."""
    try:
        logits = model_output(out)
    except ModeconnError as exc:
        raise ModeconnError(f"model {name!r}: {exc.args[0]}") from None
    want = tuple(task.output_shape(shape, num_classes))
    if tuple(logits.shape) != (2, *want):
        got = tuple(logits.shape)[1:]
        raise ModeconnError(f"model {name!r} gives outputs of shape {got} for inputs of shape {shape}, but the "
                            f"{task.name} task reads {want} (num_classes {num_classes}: "
                            f"{NUM_CLASSES_MEANS.get(task.name, 'the output width')}); choose a model for this "
                            "dataset and task")


NUM_CLASSES_MEANS = {"classification": "the classes", "regression": "target values per example",
                     "lm": "the vocabulary size"}


@register("mlp")
class MLP(nn.Module):
    """A ReLU multilayer perceptron on flattened inputs."""

    def __init__(self, input_shape, num_classes, hidden: int = 256, depth: int = 2):
        super().__init__()
        layers: list[nn.Module]
        layers, width = [nn.Flatten()], math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


register("mlp3x512", hidden=512, depth=3)(MLP)  # the width Git Re-Basin-style alignment studies use


@register("conv1d")
class Conv1dNet(nn.Module):
    """Three strided 1D convolutions and a linear head: the MNIST-1D baseline convnet."""

    def __init__(self, input_shape, num_classes, channels: int = 32):
        super().__init__()
        length = input_shape[-1]
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        for _ in range(3):
            length = (length + 1) // 2
        self.head = nn.Linear(channels * length, num_classes)

    def forward(self, x):
        x = x.reshape(x.shape[0], 1, x.shape[-1])  # (N, L) or (N, 1, L); no branch, so torch.fx can trace it
        return self.head(self.features(x).flatten(1))


@register("convbn")
class ConvBNNet(nn.Module):
    """Two conv-BatchNorm-ReLU-pool blocks and a two-layer head: the Fashion-MNIST default (~11 s/epoch on 2 cores)."""

    def __init__(self, input_shape, num_classes, channels: int = 16, hidden: int = 128):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


VGG_CONFIGS: dict[int, list[int | Literal["M"]]] = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG in its CIFAR variant: conv stack, then a 512-512 classifier with dropout."""

    def __init__(self, input_shape, num_classes, depth: int = 16, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module]
        layers, c = [], input_shape[0]
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(nn.Conv2d(c, v, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(512, 512), nn.ReLU(True),
            nn.Dropout(), nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                assert m.bias is not None  # built above with bias=True (Conv2d's default)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_max_pool2d(x, 1), 1))


for _depth in (16, 19):  # the CIFAR VGGs differ only in depth and BatchNorm
    register(f"vgg{_depth}", depth=_depth, batch_norm=False)(VGG)
    register(f"vgg{_depth}bn", depth=_depth, batch_norm=True)(VGG)


@register("convfc")
class ConvFC(nn.Module):
    """The paper's small conv net: three 5x5 conv-ReLU-pool blocks and a 1000-1000 head."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2))
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w, device="cpu")).numel()  # a shape probe at construction
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 1000), nn.ReLU(True), nn.Linear(1000, 1000),
                                        nn.ReLU(True), nn.Linear(1000, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class _PreActBasic(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.downsample = (nn.Conv2d(inplanes, planes, 1, stride, bias=False)
                           if stride != 1 or inplanes != planes else None)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class _PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = (nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False)
                           if stride != 1 or inplanes != planes * 4 else None)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreResNet(nn.Module):
    """Pre-activation ResNet for CIFAR (He et al. 2016); bottleneck blocks for depth >= 44."""

    def __init__(self, input_shape, num_classes, depth: int = 164):
        super().__init__()
        bottleneck = depth >= 44
        block = _PreActBottleneck if bottleneck else _PreActBasic
        per_stage = (depth - 2) // (9 if bottleneck else 6)
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        layers, inplanes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(per_stage):
                layers.append(block(inplanes, planes, stride if i == 0 else 1))
                inplanes = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(inplanes)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))

    def forward(self, x):
        x = torch.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


register("preresnet110", depth=110)(PreResNet)
register("preresnet164", depth=164)(PreResNet)


class _WideBasic(nn.Module):
    def __init__(self, inplanes, planes, stride, dropout):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 3, 1, 1)
        self.dropout = nn.Dropout(dropout)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, stride, 1)
        self.shortcut = (nn.Conv2d(inplanes, planes, 1, stride) if stride != 1 or inplanes != planes else None)

    def forward(self, x):
        out = self.dropout(self.conv1(torch.relu(self.bn1(x))))
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


@register("wrn28x10")
class WideResNet28x10(nn.Module):
    """Wide ResNet 28-10 (Zagoruyko and Komodakis 2016), CIFAR variant."""

    def __init__(self, input_shape, num_classes, depth: int = 28, widen: int = 10, dropout: float = 0.0):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, padding=1)
        layers, inplanes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                layers.append(_WideBasic(inplanes, planes, stride if i == 0 else 1, dropout))
                inplanes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(inplanes)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

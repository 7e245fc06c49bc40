"""Device readiness on a CPU-only machine: no device mixing (meta-device runs, an AST check), no host syncs in
the BatchNorm pass, augmentation draws that do not depend on the device."""
import ast
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn

from modeconn import Curve
from modeconn.core.plane import PlaneBasis
from modeconn.data.augment import CropFlip
from modeconn.evaluation.along import line_between
from modeconn.evaluation.batchnorm import recompute_bn
from modeconn.models import create_model

SRC = Path(__file__).parent.parent / "src" / "modeconn"
FACTORIES = {"zeros", "ones", "empty", "full", "tensor", "linspace", "arange", "rand", "randn", "randint", "randperm",
             "eye"}


def test_every_tensor_the_library_creates_names_its_device():
    """A torch factory without device= makes a CPU tensor, which then meets GPU data: every call must say where."""
    missing = []
    for f in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and not any(k.arg == "device" for k in node.keywords)):
                missing.append(f"{f.relative_to(SRC)}:{node.lineno}")
    assert missing == []


@pytest.mark.parametrize("name,shape", [("conv1d", (40,)), ("convbn", (1, 28, 28)), ("mlp", (40,))])
@pytest.mark.parametrize("kw", [{}, {"bends": 0}, {"kind": "polychain", "bends": 3}, {"free_endpoints": True}])
def test_curves_build_and_run_where_their_networks_are(name, shape, kw):
    """Networks on the meta device (shape only) stand for a GPU: nothing may be created on the CPU on the way."""
    a, b = create_model(name, shape, 10).to("meta"), create_model(name, shape, 10).to("meta")
    curve = Curve(a, b, **kw)
    x = torch.zeros(4, *shape, device="meta")
    assert curve(x, 0.3).shape == (4, 10)
    assert curve.control_points().device.type == "meta"
    assert curve.weights(0.7).device.type == "meta"
    mid = curve.model_at(0.5)
    assert mid(x).shape == (4, 10) and next(mid.parameters()).device.type == "meta"
    line = line_between(a, b)
    assert line(x, 0.5).shape == (4, 10)


@pytest.mark.parametrize("name,shape", [("convbn", (1, 28, 28)), ("mlp", (40,))])
def test_simplexes_complexes_and_subspaces_run_where_their_networks_are(name, shape):
    """A SPRO step, a complex's draw and a subspace's spread term on the meta device: nothing on the CPU."""
    from modeconn import Simplex
    from modeconn.training.subspace import matrix_ranges, squared_cosine

    nets = [create_model(name, shape, 10).to("meta") for _ in range(4)]
    x = torch.zeros(4, *shape, device="meta")
    gen = torch.Generator().manual_seed(0)
    for simplex in (Simplex(nets[:3], free=[False, False, True]),
                    Simplex(nets, free=[False, False, True, True], faces=[[0, 2, 3], [1, 2, 3]])):
        assert simplex(x, simplex.sample_weights(gen), wd=5e-4).shape == (4, 10)
        assert simplex.volume().device.type == "meta"
        assert next(simplex.grown().parameters()).device.type == "meta"
    line = Curve.through(nets[:2])
    assert line(x, 0.3).shape == (4, 10)
    assert squared_cosine(line, matrix_ranges(line)).device.type == "meta"


def test_plane_points_and_augmentation_stay_on_the_data_device():
    w = torch.zeros(3, 100, device="meta")
    basis = PlaneBasis(w[0], w[1], w[2], 1.0, 1.0)
    assert basis.points(np.zeros((5, 2))).device.type == "meta"
    x = torch.zeros(8, 3, 32, 32, device="meta")
    assert CropFlip(pad_value=torch.zeros(3)).__call__(x, torch.Generator().manual_seed(0)).shape == x.shape


def _reference_cropflip(x, generator, pad=4, fill=None):
    """The augmentation as it was written before the draws were batched into one copy (kept to compare)."""
    b, c, h, w = x.shape
    fill = torch.zeros(c) if fill is None else fill
    padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = oy[:, None] + torch.arange(h)
    cols = torch.arange(w).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]
    out = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def test_cropflip_draws_are_unchanged():
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fill = torch.tensor([-1.0, -2.0, -3.0])
    got = CropFlip(pad_value=fill)(x, torch.Generator().manual_seed(7))
    want = _reference_cropflip(x, torch.Generator().manual_seed(7), fill=fill)
    assert torch.equal(got, want)


def test_bn_recomputation_never_reads_back(host_reads):
    torch.manual_seed(0)
    net = create_model("convbn", (1, 16, 16), 10)
    batches = [(torch.randn(n, 1, 16, 16), torch.zeros(n, dtype=torch.long)) for n in (32, 32, 32, 7, 1)]
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    host_reads["n"] = 0
    assert recompute_bn(ours, batches)
    assert host_reads["n"] == 0, "recompute_bn read a tensor back to the host"
    update_bn(batches[:-1], theirs)
    assert host_reads["n"] > 0  # torch's momentum=None path reads num_batches_tracked: what recompute_bn avoids
    assert [m.momentum for m in ours.modules() if hasattr(m, "momentum")] == \
        [m.momentum for m in net.modules() if hasattr(m, "momentum")]  # momenta restored

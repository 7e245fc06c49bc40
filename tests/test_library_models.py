"""Models nobody here wrote: torchvision's and timm's architectures by name (`--model torchvision:NAME`,
`timm:NAME`), through the command line on Fashion-MNIST-32, and alignment that finds their permutation spec."""
import importlib.util
import json
import sys

import pytest
import torch

import modeconn as mc
from modeconn.alignment.spec import random_permutation
from modeconn.cli import main
from modeconn.errors import ModeconnError
from modeconn.models import GrayToRGB

needs_vision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
    reason="torchvision and timm are not installed: pip install 'modeconn[vision]' (make test does)")

SMALL = '''
import modeconn as mc


def fashion32():
    """Fashion-MNIST padded to 32x32, with its augmentation: 1024 training and 500 test images."""
    return mc.load_dataset("fashion-mnist-32").subset(train=1024, test=500)
'''

QUICK = dict(device="cpu", progress=False)


@pytest.fixture
def small_fashion(tmp_path, monkeypatch, fashion_mnist):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "smalldata.py").write_text(SMALL)
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    return tmp_path


@needs_vision
@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18", "torchvision:mobilenet_v3_small",
                                  "torchvision:googlenet"])
def test_a_library_model_is_built_for_gray_images_and_a_random_permutation_keeps_its_function(name):
    torch.manual_seed(0)
    net = mc.create_model(name, (1, 32, 32), 10).eval()
    x = torch.randn(4, 1, 32, 32)
    assert net(x).shape == (4, 10) and net.train()(x).shape == (4, 10)  # no auxiliary heads' outputs in training
    net.eval()
    assert isinstance(net, GrayToRGB) == name.startswith("torchvision:")  # timm takes in_chans=1 itself
    spec = mc.permutation_spec(net, x[:2])
    assert spec.groups, spec.fixed  # some hidden units are found to permute
    permuted = mc.permute(net, spec, random_permutation(spec, seed=3))
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), net(x), atol=1e-5, rtol=1e-5)
        assert not torch.equal(mc.parameters_vector(permuted), mc.parameters_vector(net))


@needs_vision
@pytest.mark.slow
@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:resnet18"])
def test_a_library_model_through_every_command(small_fashion, name):
    from modeconn.commands import align, connect, connectivity, eval_curve, landscape, plane, train

    root = small_fashion
    runs = []
    for seed in (0, 1):
        runs.append(root / f"net{seed}")
        made = train(runs[-1], dataset="smalldata:fashion32", model=name, epochs=5, batch_size=64, lr=0.05,
                     seed=seed, **QUICK)
        assert made.raw["model"]["name"] == name
        # 1024 images, 5 epochs; chance is 90% error. Measured 2026-12-07 (torch 2.14.1, 2 threads), seeds 0 and 1:
        # torchvision 33.2% and 32.8%, timm 27.6% and 27.8%
        assert made.raw["test_err"] < 0.5
    recorded = json.loads((runs[0] / "run.json").read_text())["model"]
    assert ("input" in recorded) == name.startswith("torchvision:")  # the gray-to-RGB repeat is on record
    connect(runs[0], runs[1], root / "curve", epochs=1, batch_size=64, **QUICK)
    curve = eval_curve(root / "curve", points=3, bn_samples=128, **QUICK)
    assert all(torch.isfinite(torch.tensor(curve.curve["test_loss"])))
    plane(out=root / "plane", curve=root / "curve", grid=2, bn_samples=128, train_samples=64, **QUICK)
    landscape(out=root / "landscape", run=runs[0], grid=3, dims=1, bn_samples=128, train_samples=64, **QUICK)
    info = align(runs[0], runs[1], root / "aligned", **QUICK)
    assert info.groups and info.objective_after >= info.objective_before  # the spec was found, matching helped
    connectivity(runs[0], runs[1], out=root / "paths", points=3, bn_samples=128, train_samples=64, **QUICK)


def test_library_model_names_are_refused_in_one_line(monkeypatch, capsys, tmp_path):
    def refused(name, message):
        with pytest.raises(ModeconnError, match=message):
            mc.create_model(name, (1, 32, 32), 10)
        assert main(["train", "--model", name, "--out", str(tmp_path / "never")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and not (tmp_path / "never").exists(), err

    if importlib.util.find_spec("torchvision") is None:
        refused("torchvision:resnet18", "needs torchvision")
    else:
        refused("torchvision:no_such_net", "torchvision has no classifier 'no_such_net'")
        # a detection model is not a classifier (and its builder would download a pretrained backbone)
        refused("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "has no classifier")
    if importlib.util.find_spec("timm") is not None:
        refused("timm:no_such_net", "timm has no classifier 'no_such_net'")
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    refused("timm:resnet18", r"needs timm, which cannot be imported .*pip install 'modeconn\[vision\]'")

"""Streamed data (DataLoaders, torch datasets, re-iterables) against the same examples held in memory: every
analysis gives the same numbers (1e-6), a resumed run from a DataLoader is bit-exact, and sources the task cannot
read are refused in one line."""
import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import modeconn as mc
from modeconn.data import StreamedData, load_mnist1d
from modeconn.errors import ModeconnError

TOL = 1e-6


def bn_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def pair():
    """MNIST-1D (700 training, 300 test examples) in memory, and the same tensors behind DataLoaders."""
    torch.set_num_threads(2)
    data = load_mnist1d().subset(train=700, test=300)
    streamed = StreamedData("mnist1d-stream", DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=64),
                            TensorDataset(data.test_x, data.test_y), num_classes=10)
    return data, streamed


def close(a, b) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= TOL, np.max(np.abs(a - b))


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().flatten().double() for t in module.state_dict().values()
                      if t.is_floating_point()])


@pytest.fixture(scope="module")
def trained(pair):
    """Two networks trained on each kind of source, and a curve between them on each."""
    cfg = mc.TrainConfig(epochs=2, batch_size=50, lr=0.05)
    out = {}
    for kind, data in zip(("memory", "stream"), pair):
        nets = []
        for seed in (0, 1):
            net = bn_mlp(seed)
            mc.train_network(net, data, mc.TrainConfig(**{**cfg.__dict__, "seed": seed}), progress=False)
            nets.append(net)
        curve = mc.Curve(nets[0], nets[1], bends=1)
        mc.train_curve(curve, data, cfg, progress=False)
        out[kind] = (nets, curve)
    return out


def test_streamed_shape_and_classes(pair):
    data, streamed = pair
    assert streamed.input_shape == data.input_shape == (40,)
    assert streamed.num_classes == 10 and streamed.train_size == 700
    assert torch.equal(streamed.example_input(), data.test_x[:2])


def test_every_order_is_the_in_memory_one(pair):
    """Training shuffles (whole or of a fixed subset), evaluation subsets and the BatchNorm order: the same
    examples in the same order, epoch after epoch."""
    data, streamed = pair
    for memory, stream in ((data.train_batches(64, seed=3), streamed.train_batches(64, seed=3)),
                           (data.train_batches(64, seed=3, limit=300), streamed.train_batches(64, seed=3, limit=300)),
                           (data.train_batches(64, False, 3, 300), streamed.train_batches(64, False, 3, 300)),
                           (data.bn_batches(64, 3, 200), streamed.bn_batches(64, 3, 200))):
        assert len(memory) == len(stream)
        for epoch in (0, 1):
            memory.set_epoch(epoch)
            stream.set_epoch(epoch)
            for (x1, y1), (x2, y2) in zip(memory, stream, strict=True):
                assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_training_and_curve_equal_in_memory(trained):
    for (a, b) in zip(trained["memory"][0], trained["stream"][0]):
        assert torch.max(torch.abs(flat(a) - flat(b))) <= TOL
    assert torch.max(torch.abs(flat(trained["memory"][1]) - flat(trained["stream"][1]))) <= TOL


def test_every_analysis_equal_in_memory(pair, trained):
    """Evaluation along paths, planes, landscape slices, curvature, ensembles, FGE, alignment, simplexes and
    subspaces read the stream as they read memory."""
    settings = mc.EvalSettings(batch_size=100, bn_samples=350, train_samples=400)
    found = {}
    for kind, data in zip(("memory", "stream"), pair):
        (a, b), curve = trained[kind]
        got = {}
        path = mc.eval_path(curve, a, b, data, points=5, settings=settings, progress=False)
        got["path"] = [path.curve[k] for k in sorted(path.curve)] + [path.line[k] for k in sorted(path.line)]
        probe = bn_mlp(0)
        probe.load_state_dict(a.state_dict())
        got["bn"] = list(mc.metrics_with_bn(probe, data, 100).to_dict().values())
        plane = mc.plane_grid(mc.parameters_vector(a), mc.parameters_vector(curve.model_at(0.5)),
                              mc.parameters_vector(b), grid=3)
        got["plane"] = mc.measure_plane(plane, bn_mlp(0), data, settings, progress=False).metrics["test_loss"]
        dirs = mc.slice_directions(a, dims=1, seed=0)
        got["slice"] = mc.measure_slice(a, data, dirs, [0.5], grid=3, settings=settings,
                                        progress=False).metrics["test_loss"]
        curvature = mc.measure_curvature({"curve": curve}, [0.5], data, settings, top=1, steps=8, progress=False)
        got["curvature"] = [row["eigenvalues"] + [row["train_loss"]] for row in curvature.paths["curve"]]
        ens = mc.curve_ensemble(curve, data, points=3, batch_size=100, progress=False)
        got["ensemble"] = list(ens.ensemble.values())
        fge = mc.fast_geometric_ensemble(copy.deepcopy(a), data,
                                         mc.FGEConfig(epochs=2, cycle=2, batch_size=50, eval_batch=100), progress=False)
        got["fge"] = [list(s.values()) for s in fge.snapshots]
        aligned, _ = mc.align(a, b, "activations", batches=data.bn_batches(100, limit=200), task=data.task)
        got["align"] = flat(aligned).tolist()
        simplex = mc.Simplex([a, b, copy.deepcopy(b)], free=[False, False, True])
        mc.train_simplex(simplex, data, mc.TrainConfig(epochs=1, batch_size=50), progress=False)
        got["simplex"] = flat(simplex).tolist()
        line = mc.Curve.through([bn_mlp(2), bn_mlp(3)])
        mc.train_subspace(line, data, mc.TrainConfig(epochs=1, batch_size=50), progress=False)
        measured = mc.subspace_metrics(line, data)[1]["metrics"]
        got["subspace"] = flat(line).tolist() + [v for m in measured.values() for v in m.values()]
        found[kind] = got
    for key in found["memory"]:
        close(np.concatenate([np.ravel(v) for v in found["memory"][key]]),
              np.concatenate([np.ravel(v) for v in found["stream"][key]]))


FOLDER = '''
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

import modeconn as mc


class ImageFiles(Dataset):
    """Gray PNGs in ImageFolder layout (root/class/name.png), listed class by class as ImageFolder lists them."""

    def __init__(self, root, flip=False):
        root = Path(root)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(f, i) for i, c in enumerate(self.classes) for f in sorted((root / c).glob("*.png"))]
        self.flip = flip

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0)[None]
        if self.flip and torch.rand(()) < 0.5:  # drawn in the worker: its seed must follow (seed, epoch)
            x = x.flip(-1)
        return x, label


def folder(data_dir):
    """Read from disk batch by batch, by a worker process."""
    return (DataLoader(ImageFiles(Path(data_dir) / "train"), batch_size=16, num_workers=1),
            DataLoader(ImageFiles(Path(data_dir) / "test"), batch_size=16))


def flipped(data_dir):
    """As folder, with a random flip drawn in the worker."""
    return (DataLoader(ImageFiles(Path(data_dir) / "train", flip=True), batch_size=16, num_workers=1),
            DataLoader(ImageFiles(Path(data_dir) / "test"), batch_size=16))


def in_memory(data_dir):
    """The same files, stacked into tensors."""
    return mc.data.from_torch("files", ImageFiles(Path(data_dir) / "train"), ImageFiles(Path(data_dir) / "test"))


def net(input_shape, num_classes):
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(6 * 8 * 8, num_classes))
'''


@pytest.fixture
def image_files(tmp_path, monkeypatch):
    """A module `yourfolder` on the Python path and 3 classes of 8x8 gray PNGs (30 train, 10 test each)."""
    from PIL import Image

    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "yourfolder.py").write_text(FOLDER)
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    g = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        for k, name in enumerate(("circle", "square", "stripe")):
            (tmp_path / "files" / split / name).mkdir(parents=True)
            for i in range(n):
                img = np.clip(g.normal(80 + 60 * k, 40, (8, 8)), 0, 255).astype(np.uint8)
                img[:, k * 2:k * 2 + 3] = 255  # a class's own bright columns
                Image.fromarray(img, mode="L").save(tmp_path / "files" / split / name / f"{i:03d}.png")
    return tmp_path


QUICK = dict(model="yourfolder:net", epochs=3, batch_size=16, device="cpu", progress=False)


def test_dataloader_over_image_files_through_the_cli_equals_the_files_in_memory(image_files):
    """Class-sorted files read by a DataLoader worker: training learns, and the BN-recomputed metrics along the line
    between two networks equal those of the same examples held in memory (eval-line's --dataset override)."""
    from modeconn.commands import connect, curvature, ensemble, eval_curve, eval_line, landscape, plane, train

    files = str(image_files / "files")
    runs = {}
    for seed in (0, 1):
        runs[seed] = image_files / f"net{seed}"
        made = train(runs[seed], dataset="yourfolder:folder", data_dir=files, seed=seed, **QUICK)
        assert made.raw["dataset"] == "yourfolder:folder" and made.raw["test_err"] < 0.34  # chance: 0.67
    streamed = eval_line(runs[0], runs[1], image_files / "line", points=3, batch_size=7, device="cpu",
                         progress=False)
    memory = eval_line(runs[0], runs[1], image_files / "line-memory", points=3, batch_size=7, device="cpu",
                       progress=False, dataset="yourfolder:in_memory", data_dir=files)
    for key in streamed.line:
        close(streamed.line[key], memory.line[key])
    other = r"gives inputs of shape \(40,\) with num_classes 10 .* made for \(1, 8, 8\) with num_classes 3: pass data"
    with pytest.raises(ModeconnError, match=other) as refused:
        eval_line(runs[0], runs[1], image_files / "line-other", points=3, device="cpu", progress=False,
                  dataset="mnist1d")
    assert "\n" not in str(refused.value) and not (image_files / "line-other").exists()
    connect(runs[0], runs[1], image_files / "curve", epochs=2, batch_size=16, device="cpu", progress=False)
    streamed = eval_curve(image_files / "curve", points=3, out=image_files / "curve-eval", batch_size=7,
                          device="cpu", progress=False)
    memory = eval_curve(image_files / "curve", points=3, out=image_files / "curve-eval-memory", batch_size=7,
                        device="cpu", progress=False, dataset="yourfolder:in_memory", data_dir=files)
    for key in streamed.curve:
        close(streamed.curve[key], memory.curve[key])
    assert memory.settings["dataset"] == "yourfolder:in_memory" and "dataset" not in streamed.settings
    streamed = ensemble(image_files / "curve", 3, out=image_files / "ens.json", device="cpu", progress=False)
    memory = ensemble(image_files / "curve", 3, out=image_files / "ens-memory.json", device="cpu", progress=False,
                      dataset="yourfolder:in_memory", data_dir=files)
    close(list(streamed.ensemble.values()), list(memory.ensemble.values()))
    assert memory.dataset == "yourfolder:in_memory" and streamed.dataset is None
    for command, out, kwargs in ((plane, "plane", dict(curve=image_files / "curve", grid=2)),
                                 (landscape, "landscape", dict(run=runs[0], grid=3, dims=1)),
                                 (curvature, "curvature", dict(run=image_files / "curve", points=2, top=1, steps=5))):
        streamed = command(out=image_files / out, device="cpu", progress=False, **kwargs)
        memory = command(out=image_files / f"{out}-memory", device="cpu", progress=False,
                         dataset="yourfolder:in_memory", data_dir=files, **kwargs)
        recorded = json.loads((image_files / f"{out}-memory" / f"{out}.json").read_text())
        assert "yourfolder:in_memory" in json.dumps(recorded), out
        if command is curvature:
            for path in streamed.paths:
                close([r["train_loss"] for r in streamed.paths[path]], [r["train_loss"] for r in memory.paths[path]])
        else:
            for key in streamed.metrics:
                close(streamed.metrics[key], memory.metrics[key])


def test_resume_from_a_dataloader_with_worker_randomness_is_bit_exact(image_files, kill_after_checkpoints):
    from modeconn.commands import train
    from modeconn.storage.files import load_tensors

    run = dict(dataset="yourfolder:flipped", data_dir=str(image_files / "files"), **QUICK)
    train(image_files / "whole", **run)
    undo = kill_after_checkpoints(1)
    with pytest.raises(KeyboardInterrupt):
        train(image_files / "cut", **run)
    undo()
    train(image_files / "cut", resume=True, **run)
    a = load_tensors(image_files / "whole" / "model.safetensors")
    b = load_tensors(image_files / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class EpochBatches(IterableDataset):
    """An iterable source with its own order, a function of the epoch it is told."""

    def __init__(self, x, y, with_len=True):
        self.x, self.y, self.epochs, self.with_len = x, y, [0], with_len  # before any set_epoch: 0

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.epochs[-1]))
        for i in range(0, len(self.x), 100):
            yield self.x[order[i:i + 100]], self.y[order[i:i + 100]], order[i:i + 100]  # (x, y, index) triples

    def __len__(self):
        if not self.with_len:
            raise TypeError("no length")
        return (len(self.x) + 99) // 100


def test_a_dataloader_with_a_sampler_of_its_own_keeps_it(pair):
    """A class-balancing or other custom sampler is the user's choice: the DataLoader is read as it is."""
    data, _ = pair
    only_class_3 = (data.train_y == 3).nonzero().flatten().tolist()
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=32,
                        sampler=torch.utils.data.SubsetRandomSampler(only_class_3))
    streamed = StreamedData("sampled", loader, TensorDataset(data.test_x, data.test_y), 10)
    labels = torch.cat([y for _, y in streamed.train_batches(100)])
    assert len(labels) == len(only_class_3) and bool((labels == 3).all())
    # a DataLoader without batching (batch_size=None) is batched at the analysis's size
    unbatched = StreamedData("unbatched", DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=None),
                             TensorDataset(data.test_x, data.test_y), 10)
    assert [len(y) for _, y in unbatched.train_batches(300, shuffle=False)] == [300, 300, 100]
    # a DistributedSampler is replaced: under torchrun modeconn deals each global batch to the ranks itself
    pairs = TensorDataset(data.train_x, data.train_y)
    shared = DataLoader(pairs, sampler=torch.utils.data.DistributedSampler(pairs, num_replicas=2, rank=1))
    streamed = StreamedData("distributed", shared, TensorDataset(data.test_x, data.test_y), 10)
    assert streamed.train_size == 700 and sum(len(y) for _, y in streamed.train_batches(100)) == 700


def test_an_iterable_source_is_told_each_epoch_and_needs_a_length_to_train(pair):
    data, _ = pair
    source = EpochBatches(data.train_x, data.train_y)
    streamed = StreamedData("iterable", source, [(data.test_x, data.test_y)], num_classes=10)
    mc.train_network(bn_mlp(0), streamed, mc.TrainConfig(epochs=3, batch_size=100), progress=False)
    assert source.epochs[-3:] == [0, 1, 2]
    limited = list(streamed.subset(train=250).train_batches(100, shuffle=False))
    assert [len(b[0]) for b in limited] == [100, 100, 50]
    no_len = StreamedData("iterable", EpochBatches(data.train_x, data.train_y, with_len=False),
                          [(data.test_x, data.test_y)], num_classes=10)
    with pytest.raises(ModeconnError, match=r"without len\(\) cannot be trained on"):
        mc.train_network(bn_mlp(0), no_len, mc.TrainConfig(epochs=1), progress=False)
    assert mc.metrics_with_bn(bn_mlp(0), no_len, 100).test.loss > 0  # evaluation needs no length


def test_sources_the_task_cannot_read_are_refused_in_one_line(pair):
    data, _ = pair
    pairs = TensorDataset(data.test_x, data.test_y)
    refusals = [
        (lambda: StreamedData("s", iter([(data.train_x, data.train_y)]), pairs, 10), "an iterator, which can be read"),
        (lambda: StreamedData("s", pairs, pairs), "give num_classes for streamed classification"),
        (lambda: StreamedData("s", TensorDataset(data.test_x), pairs, 10), "got a list of 1"),
        (lambda: StreamedData("s", [data.test_x], pairs, 10), "got a Tensor"),
        (lambda: StreamedData("s", [{"x": data.test_x, "y": data.test_y}], pairs, 10), "needs the task to name"),
        (lambda: StreamedData("s", TensorDataset(data.test_x[:0], data.test_y[:0]), pairs, 10), "holds no examples"),
        (lambda: StreamedData("s", 42, pairs, 10), "give a DataLoader"),
        (lambda: StreamedData("s", pairs, TensorDataset(data.test_x, data.test_y + 20), 10), "out of range|labels"),
    ]
    for make, message in refusals:
        with pytest.raises(ModeconnError, match=message) as caught:
            make()
        assert "\n" not in str(caught.value)
    # what is wrong after the first batch is refused where the analysis meets it, in one line
    late_label = TensorDataset(data.test_x, torch.cat([data.test_y[:-1], torch.tensor([10])]))
    late_shape = [(data.test_x[:50], data.test_y[:50]), (data.test_x[:50, :30], data.test_y[:50])]
    late_nan = [(data.test_x[:50], data.test_y[:50]), (data.test_x[:50] * float("nan"), data.test_y[:50])]
    for test, message in ((late_label, r"the test batch's labels run from \d+ to 10, outside 0..9"),
                          (late_shape, r"a test batch has inputs of shape \(30,\), the first one \(40,\)"),
                          (late_nan, "a test batch holds NaN or infinite inputs")):
        with pytest.raises(ModeconnError, match=message) as caught:
            mc.evaluate(bn_mlp(0), StreamedData("s", pairs, test, 10).test_batches(100))
        assert "\n" not in str(caught.value)
    for bad in ("10", 10.0, True, 0):
        with pytest.raises(ModeconnError, match="num_classes .* must be a positive integer"):
            StreamedData("s", pairs, pairs, bad)
    dicts = [{"x": data.test_x[:50], "y": data.test_y[:50]}]
    read = StreamedData("dicts", dicts, dicts, 10, task=mc.classification(input_key="x", target_key="y"))
    assert read.input_shape == (40,)


def test_a_dataloader_over_a_list_of_examples_is_read_in_the_in_memory_order():
    # a list is a DataLoader's dataset as much as a torch Dataset: indexed in modeconn's seeded order, at the
    # analysis's batch size, not read as the loader's own shuffled batches of 16
    import torch
    from torch.utils.data import DataLoader

    import modeconn as mc

    x, y = torch.randn(40, 3), torch.arange(40) % 4
    listed = mc.StreamedData("listed", DataLoader(list(zip(x, y)), batch_size=16, shuffle=True),
                             DataLoader(list(zip(x, y)), batch_size=16), num_classes=4)
    memory = mc.Dataset("memory", x, y, x, y, 4)
    for (xa, ya), (xb, yb) in zip(listed.train_batches(8, seed=3), memory.train_batches(8, seed=3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)

"""Language models: the lm task, the fortunes text, Hugging Face models by `--model hf:PATH` (GPT-2 and BERT built
from the shipped configs), fine-tuning with `train --init`, and the analyses on them."""
import importlib.util
import json
import math
import sys

import pytest
import torch
from torch.nn import functional as F

import modeconn as mc
from modeconn.cli import main
from modeconn.data.fortunes import is_test, load_fortunes
from modeconn.errors import ModeconnError
from modeconn.tasks import IGNORE_INDEX, LanguageModeling, model_output

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                              reason="transformers is not installed: pip install 'modeconn[hf]' (make test does)")
QUICK = dict(device="cpu", progress=False)
# four small topics (about 30 KB): a GPT trains on them in seconds
SMALL = "fortunes/only=goedel,magic,paradoxum,pets"


def test_the_lm_task_measures_next_tokens_over_the_unmasked_positions():
    torch.manual_seed(0)
    task = LanguageModeling()
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[1, 3:] = IGNORE_INDEX  # padding: not measured
    sums, count = task.measure(logits, labels)
    shifted_logits, shifted = logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1)
    keep = shifted != IGNORE_INDEX
    assert float(count) == int(keep.sum()) == 3 * 5 - 3
    assert float(sums[0]) == pytest.approx(float(F.cross_entropy(shifted_logits[keep], shifted[keep],
                                                                 reduction="sum")), rel=1e-6)
    assert float(sums[1]) == int((shifted_logits[keep].argmax(1) != shifted[keep]).sum())
    assert float(task.loss(logits, labels)) == pytest.approx(float(sums[0] / count), rel=1e-6)
    means = task.reduce(sums, count)
    assert list(means) == ["loss", "err", "ppl"] and means["ppl"] == pytest.approx(math.exp(means["loss"]))
    assert task.point_metrics[:3] == ("train_loss", "train_err", "train_ppl")
    # several networks at once, as PointEvaluator measures them
    many = torch.func.vmap(task.sums, in_dims=(0, None))(torch.stack([logits, 2 * logits]), labels)
    assert torch.allclose(many[0], sums.float().double())


def test_the_lm_task_reads_token_tensors_and_hugging_face_dict_batches():
    task = LanguageModeling()
    ids = torch.arange(12).reshape(2, 6)
    x, y = task.split(ids)
    assert x is ids and y is ids
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    x, y = task.split({"input_ids": ids, "attention_mask": mask})
    assert x.shape == (2, 2, 6) and torch.equal(x[:, 0], ids) and torch.equal(x[:, 1], mask)
    assert y[0, 4:].eq(IGNORE_INDEX).all() and torch.equal(y[1], ids[1])
    labels = ids.clone()
    assert task.split({"input_ids": ids, "labels": labels})[1] is labels
    # labels given with a mask: the masked positions are still not measured
    assert task.split({"input_ids": ids, "attention_mask": mask, "labels": labels})[1][0, 4:].eq(IGNORE_INDEX).all()
    with pytest.raises(ModeconnError, match="nothing to measure"):  # every label padding: no perplexity of 0/0
        task.reduce(*task.measure(torch.randn(2, 6, 20), torch.full((2, 6), IGNORE_INDEX)))
    # a classifier's dict batch in the same layout, with `label`
    x, y = mc.classification().split({"input_ids": ids, "attention_mask": mask, "label": torch.tensor([0, 1])})
    assert x.shape == (2, 2, 6) and y.tolist() == [0, 1]
    with pytest.raises(ModeconnError, match="no labels or label entry"):
        mc.classification().split({"input_ids": ids})


def test_model_outputs_are_read_as_the_task_reads_them():
    logits = torch.randn(2, 3)
    assert model_output(logits) is logits
    assert model_output({"logits": logits, "loss": None}) is logits
    assert model_output((logits, torch.zeros(1))) is logits
    with pytest.raises(ModeconnError, match="without logits"):
        model_output({"hidden": logits})
    with pytest.raises(ModeconnError, match="returns a str"):
        model_output("no")
    assert float(mc.classification().loss({"logits": logits}, torch.tensor([0, 1]))) == \
        pytest.approx(float(F.cross_entropy(logits, torch.tensor([0, 1]))))


@pytest.mark.parametrize("labels, message", [
    (torch.zeros(2, 5), "integer token ids"),
    (torch.full((2, 5), 300), r"outside the vocabulary 0\.\.255"),
    (torch.zeros(4, dtype=torch.long), r"shape \(batch, length >= 2\)"),
])
def test_token_labels_the_lm_task_cannot_measure_are_refused(labels, message):
    with pytest.raises(ModeconnError, match=message):
        LanguageModeling().check_targets(labels, 256, "training")


def _corpus(folder, topics):
    folder.mkdir()
    for topic, docs in topics.items():
        (folder / topic).write_bytes(b"".join(d + b"\n%\n" for d in docs))
        (folder / f"{topic}.dat").write_bytes(b"index, not text")
    return folder


def test_fortunes_is_split_by_document_the_same_whichever_topics_are_chosen(tmp_path):
    docs = {t: [f"{t} document {i:03d} ".encode() * 3 for i in range(40)] for t in ("alpha", "beta", "gamma")}
    folder = _corpus(tmp_path / "corpus", docs)

    def text(data, split):
        x = data.train_x if split == "train" else data.test_x
        return bytes(x.flatten().tolist())

    alone = load_fortunes("fortunes/only=beta/block=16", folder)
    together = load_fortunes("fortunes/block=16", folder)
    without = load_fortunes("fortunes/except=beta/block=16", folder)
    assert alone.task.name == "lm" and alone.num_classes == 256 and alone.train_x.dtype == torch.int64
    assert torch.equal(alone.train_x, alone.train_y) and alone.input_shape == (16,)
    test_docs = [d for d, t in zip(docs["beta"], is_test("beta", 40)) if t]
    assert len(test_docs) == 4  # 10% of each topic
    for doc in test_docs:
        assert doc[:20] in text(alone, "test") and doc[:20] in text(together, "test")
        assert doc[:20] not in text(alone, "train") and doc[:20] not in text(together, "train")
        assert doc[:20] not in text(without, "train") + text(without, "test")
    assert b"alpha" not in text(alone, "train") + text(alone, "test")
    assert b"%\n" in text(together, "train")  # the separators are kept between documents


def test_the_real_fortunes_corpus(fortunes_text):
    data = mc.load_dataset("fortunes")
    assert data.input_shape == (128,) and data.num_classes == 256
    # 2.6 MB of text, a tenth of it test (measured: 18,061 and 2,069 blocks of 128 bytes)
    assert 17_000 < len(data.train_x) < 19_000 and 1_900 < len(data.test_x) < 2_300
    assert int(data.train_x.max()) < 256 and int(data.train_x.min()) >= 0
    science = mc.load_dataset("fortunes/only=science")
    rest = mc.load_dataset("fortunes/except=science")
    assert abs(len(science.train_x) + len(rest.train_x) - len(data.train_x)) <= 2  # a block's tail per split


@pytest.mark.parametrize("name, message", [
    ("fortunes/only=nope", "no topic 'nope'"),
    ("fortunes/only=alpha/except=beta", "not both"),
    ("fortunes/size=3", "is not only=TOPIC"),
    ("fortunes/block=1", "block must be a whole number"),
    ("fortunes/only=tiny", "shorter than one block"),
])
def test_fortunes_names_and_short_text_are_refused(tmp_path, name, message):
    folder = _corpus(tmp_path / "corpus", {"alpha": [b"a" * 400] * 20, "tiny": [b"short"]})
    with pytest.raises(ModeconnError, match=message):
        load_fortunes(name, folder)


def test_a_missing_corpus_says_how_to_install_it(tmp_path):
    with pytest.raises(ModeconnError, match="apt-get install fortunes"):
        load_fortunes("fortunes", tmp_path / "none")


@needs_hf
def test_gpt2_keeps_its_tied_embedding_at_every_point_of_a_curve():
    data = load_fortunes_small()
    a, b = (mc.create_model("hf:gpt2-tiny", data.input_shape, 256, data.task, data.example_input())
            for _ in range(2))
    gpt = a.model
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    once = sum(p.numel() for p in a.parameters())
    twice = sum(p.numel() for _, p in a.named_parameters(remove_duplicate=False))
    assert mc.parameters_vector(a).numel() == once == twice - 256 * 128  # the tied matrix counts once
    curve = mc.Curve(a, b, bends=1)
    x = data.test_x[:2]
    for t in (0.0, 0.3, 0.5):
        net = curve.model_at(t).eval()
        assert net.model.lm_head.weight is net.model.transformer.wte.weight
        assert torch.equal(curve.eval()(x, t).logits, net(x).logits)


def load_fortunes_small():
    """Two made-up topics in blocks of 32 tokens, from a folder written here (no corpus needed)."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    for i, topic in enumerate(("one", "two")):
        (folder / topic).write_bytes(b"".join(bytes([65 + (i + j) % 26]) * 60 + b"\n%\n" for j in range(30)))
    return load_fortunes("fortunes/block=32", folder)


@needs_hf
def test_hf_models_load_a_save_pretrained_folder_and_refuse_what_is_unsafe(tmp_path, monkeypatch):
    import transformers

    data = load_fortunes_small()
    made = mc.create_model("hf:gpt2-tiny", data.input_shape, 256, data.task)
    made.model.save_pretrained(tmp_path / "saved")  # safetensors, with its config.json
    loaded = mc.create_model(f"hf:{tmp_path / 'saved'}", data.input_shape, 256, data.task)
    assert all(torch.equal(p, q) for p, q in zip(made.state_dict().values(), loaded.state_dict().values()))

    monkeypatch.chdir(tmp_path)  # a relative path is recorded absolute: the run is read back from anywhere
    from modeconn.commands import validate
    assert validate.model_name("hf:saved") == f"hf:{tmp_path / 'saved'}"
    assert validate.model_name("hf:gpt2-tiny") == "hf:gpt2-tiny"

    def refused(name, message, task=data.task):
        with pytest.raises(ModeconnError, match=message):
            mc.create_model(name, data.input_shape, 256, task)

    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    refused(f"hf:{tmp_path / 'remote'}", "never runs remote code")
    (tmp_path / "alien.json").write_text(json.dumps({**config, "model_type": "alien"}))
    refused(f"hf:{tmp_path / 'alien.json'}", "does not know model_type 'alien'")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text(json.dumps(config))
    torch.save({}, tmp_path / "pickled" / "pytorch_model.bin")
    refused(f"hf:{tmp_path / 'pickled'}", "pickled weights")
    refused(f"hf:{tmp_path / 'empty'}", "no config.json there")
    refused("hf:bert-tiny", r"the lm task reads \(32, 256\)")  # a classifier's output for the lm task
    refused("hf:gpt2-tiny", r"classification task reads \(256,\)", mc.classification())
    monkeypatch.setitem(sys.modules, "transformers", None)
    refused("hf:gpt2-tiny", r"needs transformers.*pip install 'modeconn\[hf\]'")
    assert isinstance(transformers.__version__, str)


@needs_hf
def test_a_gpt_is_trained_fine_tuned_and_measured_through_the_command_line(fortunes_text, tmp_path):
    pre, a, b = tmp_path / "pre", tmp_path / "a", tmp_path / "b"
    mc.commands.train(pre, SMALL, epochs=2, **QUICK)
    run = json.loads((pre / "run.json").read_text())
    assert run["model"]["name"] == "hf:gpt2-tiny" and run["config"]["optimizer"] == "adamw"
    # a uniform guess over bytes has perplexity 256; two epochs on 30 KB reach about 30 (measured 29.9)
    assert run["test_ppl"] < 60 and run["test_ppl"] == pytest.approx(math.exp(run["test_loss"]))
    for out, seed in ((a, 1), (b, 2)):
        mc.commands.train(out, "fortunes/only=science", init=pre, epochs=1, seed=seed, **QUICK)
    tuned = json.loads((a / "run.json").read_text())
    assert tuned["init"] == str((pre / "model.safetensors").resolve())
    assert tuned["test_ppl"] < 40  # measured 21.4: the pre-trained start carries over to a new topic

    line = mc.commands.eval_line(a, b, out=tmp_path / "line", points=3, **QUICK)
    assert {"test_ppl", "test_err", "test_loss"} <= set(line.line)
    mc.commands.connect(a, b, tmp_path / "curve", epochs=1, **QUICK)
    curve = mc.commands.eval_curve(tmp_path / "curve", points=3, **QUICK)
    assert curve.stat("curve", "test_ppl", "barrier") < curve.stat("line", "test_ppl", "barrier") + 1.0
    aligned = mc.commands.align(a, b, tmp_path / "aligned", **QUICK)
    assert aligned.objective_after >= aligned.objective_before and len(aligned.groups) == 5
    curvature = mc.commands.curvature(a, out=tmp_path / "curv", top=1, steps=4, train_samples=32, **QUICK)
    assert curvature.paths["network"][0]["eigenvalues"][0] > 0  # measured 20 after two epochs
    assert main(["report", str(tmp_path)]) == 0
    assert "perplexity" in (tmp_path / "report.html").read_text()


TEXT_LAB = '''
"""Topic classification as Hugging Face dict batches: 64-byte blocks of science (0) or art (1) fortunes, each cut
to a random length with an attention mask (the rest padded with 0)."""
import torch
from torch.utils.data import DataLoader

from modeconn.data.fortunes import load_fortunes


def _examples(science, art, seed):
    n = min(len(science), len(art))
    x = torch.cat([science[:n], art[:n]])
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    lengths = torch.randint(16, x.shape[1] + 1, (len(x),), generator=torch.Generator().manual_seed(seed))
    mask = (torch.arange(x.shape[1]) < lengths[:, None]).long()
    return [{"input_ids": ids, "attention_mask": m, "label": label} for ids, m, label in zip(x * mask, mask, y)]


def topics():
    science = load_fortunes("fortunes/only=science/block=64")
    art = load_fortunes("fortunes/only=art/block=64")
    train = _examples(science.train_x, art.train_x, 0)
    test = _examples(science.test_x, art.test_x, 1)
    return {"train": DataLoader(train, batch_size=32, shuffle=True), "test": DataLoader(test, batch_size=100),
            "num_classes": 2}
'''


@needs_hf
def test_a_bert_classifier_on_dict_batches_through_the_command_line(fortunes_text, tmp_path, monkeypatch):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "textlab.py").write_text(TEXT_LAB)
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    adamw = dict(epochs=3, optimizer="adamw", lr=1e-3, schedule="cosine", **QUICK)
    for seed in (1, 2):
        mc.commands.train(tmp_path / f"bert{seed}", "textlab:topics", model="hf:bert-tiny", seed=seed, **adamw)
    run = json.loads((tmp_path / "bert1" / "run.json").read_text())
    assert run["model"]["input_shape"] == [2, 64]  # ids and attention mask, stacked
    assert run["test_err"] < 0.45  # two balanced topics, chance 0.5; measured 0.36
    line = mc.commands.eval_line(tmp_path / "bert1", tmp_path / "bert2", out=tmp_path / "line", points=3, **QUICK)
    assert line.line["test_err"][0] == pytest.approx(run["test_err"], abs=1e-9)


@needs_hf
def test_streamed_dict_batches_measure_what_the_same_tokens_in_memory_do():
    from torch.utils.data import DataLoader

    data = load_fortunes_small()
    torch.manual_seed(0)
    net = mc.create_model("hf:gpt2-tiny", data.input_shape, 256, data.task)
    as_dicts = [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in data.test_x]
    streamed = mc.StreamedData("dicts", DataLoader(as_dicts, batch_size=7), DataLoader(as_dicts, batch_size=7),
                               num_classes=256, task=mc.language_modeling())
    assert streamed.input_shape == (2, 32)
    in_memory = mc.evaluate(net, data.test_batches(5), task=data.task)
    from_dicts = mc.evaluate(net, streamed.test_batches(5), task=streamed.task)
    for name in ("loss", "err", "ppl"):
        assert from_dicts[name] == pytest.approx(in_memory[name], rel=1e-5)


def test_transformers_missing_is_refused_in_one_line_before_anything_is_written(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` does where it is missing
    assert main(["train", "--out", str(tmp_path / "out"), "--model", "hf:gpt2-tiny"]) == 2
    err = capsys.readouterr().err
    assert "needs transformers" in err and "pip install 'modeconn[hf]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _transformer(name: str):
    """A GPT-2 (token ids) or BERT classifier (ids and attention mask) from the shipped configs, with an input."""
    torch.manual_seed(0)
    x = torch.randint(1, 256, (3, 16))
    if name == "gpt2-tiny":
        return mc.create_model("hf:gpt2-tiny", (16,), 256, mc.language_modeling()).eval(), x
    mask = torch.ones_like(x)
    mask[0, 10:] = 0  # padding: the mask reaches attention
    return mc.create_model("hf:bert-tiny", (2, 16), 2).eval(), torch.stack([x * mask, mask], 1)


@needs_hf
@pytest.mark.parametrize("name", ["gpt2-tiny", "bert-tiny"])
def test_a_transformer_spec_moves_whole_heads_and_keeps_the_function(name):
    from modeconn.alignment.spec import permute, random_permutation

    model, x = _transformer(name)
    spec = mc.permutation_spec(model, x)
    sizes = sorted(spec.groups.values())
    # per block: 4 heads and 512 MLP units; the residual stream (128) once; BERT's pooler (128)
    assert sizes == ([4, 4, 128, 512, 512] if name == "gpt2-tiny" else [4, 4, 128, 128, 512, 512])
    assert sum("units inside each of its 4 heads stay in place" in f for f in spec.fixed) == 6  # q, k, v; 2 blocks
    axes = {(a.name, a.dim): a.segments for a in spec.axes}
    if name == "gpt2-tiny":  # Conv1D stores (in, out): q, k and v are thirds of c_attn's columns, one head group
        qkv = axes[("model.transformer.h.0.attn.c_attn.weight", 1)]
        assert len(qkv) == 3 and len({s.group for s in qkv}) == 1 and all((s.size, s.repeat) == (4, 32) for s in qkv)
        assert axes[("model.transformer.h.0.attn.c_proj.weight", 0)] == (qkv[0],)  # its input rows, head by head
        stream = axes[("model.transformer.wte.weight", 1)]  # the tied embedding and head: one tensor, once
        assert "model.lm_head.weight" not in {a.name for a in spec.axes} and stream[0].size == 128
        assert axes[("model.transformer.h.1.ln_2.weight", 0)] == stream
    else:
        heads = {axes[(f"model.bert.encoder.layer.0.attention.self.{p}.weight", 0)] for p in ("query", "key", "value")}
        assert len(heads) == 1 and next(iter(heads))[0].repeat == 32
    for seed in (1, 2):
        permuted = permute(model, spec, random_permutation(spec, seed))
        moved = sum(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), permuted.state_dict().values()))
        assert moved > 10
        with torch.no_grad():
            assert torch.allclose(model(x).logits, permuted(x).logits, atol=1e-5, rtol=0)


@needs_hf
@pytest.mark.parametrize("name", ["gpt2-tiny", "bert-tiny"])
@pytest.mark.parametrize("method", ["weights", "activations"])
def test_matching_recovers_a_permuted_transformer_exactly(name, method):
    from modeconn.alignment.spec import permute, random_permutation

    model, x = _transformer(name)
    spec = mc.permutation_spec(model, x)
    permuted = permute(model, spec, random_permutation(spec, 3))
    batches = [(torch.cat([x] * 4), None)] * 2
    aligned, info = mc.align(model, permuted, method, batches=batches, example_input=x)
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        assert torch.equal(p, q), key


@needs_hf
def test_fine_tuned_gpts_share_a_basin_and_scratch_ones_do_not(fortunes_text, tmp_path):
    """The demo's language-model part, as `demo --lm` runs it (a GPT pre-trained for one epoch on every topic but
    computers, two copies fine-tuned on computers for 3 epochs, two trained there from scratch for 3 epochs), and
    the claims of docs/results.md on it: the fine-tuned pair's line has a small fraction of the scratch pair's
    barrier, a Bezier curve removes most of the scratch pair's, and weight matching lowers it."""
    import importlib

    demo = importlib.import_module("modeconn.commands.demo")  # the module (the package exports the command)
    demo._language_models(tmp_path / "lm", QUICK)
    assert json.loads((tmp_path / "lm" / "tuned1" / "run.json").read_text())["init"].endswith("pre/model.safetensors")
    tuned, scratch = (json.loads((tmp_path / "lm" / f"{pair}-paths" / "paths.json").read_text())["summary"]
                      for pair in ("tuned", "scratch"))
    barrier = {f"{pair} {path}": summary[path]["test_ppl"]["barrier"] for pair, summary in
               (("tuned", tuned), ("scratch", scratch)) for path in summary if "test_ppl" in summary[path]}
    # measured (2 threads): fine-tuned 0.0 against scratch 8.2 in perplexity; the curve 0.91 (11% of the line's);
    # weight matching 6.8 (83%), activation matching 5.7 (69%)
    assert barrier["tuned line"] < 0.1 * barrier["scratch line"]
    assert barrier["scratch curve"] < 0.4 * barrier["scratch line"]
    assert min(barrier["scratch weights_line"], barrier["scratch activations_line"]) < 0.9 * barrier["scratch line"]
    assert "perplexity" in mc.commands.report(tmp_path).read_text()


@needs_hf
def test_every_other_analysis_runs_on_a_gpt(fortunes_text, tmp_path):
    """plane, landscape, ensemble, fge, simplex, subspace and instability on GPTs (train, eval-line, connect,
    eval-curve, align, connectivity and curvature run in the tests above), each measured in perplexity."""
    tiny = f"{SMALL}/block=32"  # about 900 blocks: each analysis in seconds
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 1), (b, 2)):
        mc.commands.train(out, tiny, epochs=1, seed=seed, **QUICK)
    mc.commands.connect(a, b, tmp_path / "ab", epochs=1, **QUICK)
    plane = mc.commands.plane(tmp_path / "plane", curve=tmp_path / "ab", grid=3, **QUICK)
    assert plane.metrics["test_ppl"].shape == (3, 3)
    slice_ = mc.commands.landscape(tmp_path / "land", run=a, grid=3, **QUICK)
    assert slice_.metrics["test_ppl"].min() > 1
    ensemble = mc.commands.ensemble(curve=tmp_path / "ab", points=3, **QUICK)
    assert set(ensemble.ensemble) == {"loss", "err", "ppl"}
    assert ensemble.ensemble["ppl"] == pytest.approx(math.exp(ensemble.ensemble["loss"]))
    fge = mc.commands.fge(a, tmp_path / "fge", epochs=2, cycle=2, **QUICK)
    assert "ensemble_test_ppl" in fge.snapshots[-1]
    simplex = mc.commands.simplex(start=[a], out=tmp_path / "simplex", vertices=1, epochs=1, **QUICK)
    assert any(k.endswith("test_ppl") for k in simplex.raw), simplex.raw
    subspace = mc.commands.subspace(tmp_path / "sub", tiny, epochs=1, **QUICK)
    assert any(k.endswith("test_ppl") for k in subspace.raw), subspace.raw
    unstable = mc.commands.instability(tmp_path / "inst", tiny, epochs=1, spawn=[0], points=3, **QUICK)
    assert unstable.headline == "test_ppl" and "test_ppl_barrier" in unstable.per_spawn[0]

"""`modeconn align`: network b relabelled into a's units (Git Re-Basin), an ordinary network run."""
from __future__ import annotations

from dataclasses import dataclass

from ..alignment.matching import METHODS, AlignInfo
from ..alignment.matching import align as align_networks
from ..errors import ModeconnError
from ..evaluation.evaluate import split_metrics
from ..storage.files import save_tensors
from ..storage.runfolder import describe_endpoints, load_endpoints, write_run
from . import validate
from .common import RunFolder
from .options import REQUIRED, DataOptions, option
from .registry import command


@dataclass
class AlignOptions(DataOptions):
    start: str = option(REQUIRED, "network a: the labelling to match")
    end: str = option(REQUIRED, "network b: the network to relabel")
    out: str = option(REQUIRED, "the network run folder to write")
    method: str = option("weights", "weight matching (default) or activation matching on training data",
                         choices=tuple(METHODS))
    seed: int = option(0, "order of the groups in weight matching")
    train_samples: int | None = option(None, "examples activation matching measures")


def _summary(result: AlignInfo, o: AlignOptions) -> str:
    return (f"{o.out}: {o.end} aligned to {o.start} by {result.method} matching in {result.passes} "
            f"pass(es), objective {result.objective_before:.4g} -> {result.objective_after:.4g} "
            f"({result.seconds:.1f} s); {len(result.groups)} groups, {len(result.fixed)} ops left fixed")


@command("align", AlignOptions, help="permute a network's hidden units to match another's (Git Re-Basin)",
         summary=_summary)
def align(o: AlignOptions) -> AlignInfo:
    """Permute END's hidden units to match START's: OUT holds model.safetensors, permutation.safetensors, run.json.

    The result computes exactly what END computes and is a network run like any other, so
    eval-line, connect and plane take it. `train_samples` limits the training examples that
    activation matching measures (default: all).
    """
    if o.method not in METHODS:
        raise ModeconnError(f"unknown --method {o.method!r}: choose one of {', '.join(METHODS)}")
    seed = validate.nonnegative_int("--seed", o.seed)
    train_samples = validate.optional(validate.positive_int, "--train-samples", o.train_samples)
    sources = describe_endpoints([o.start, o.end])
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out, "run.json")
    dev = folder.join(o.device)
    ends = load_endpoints(sources, data_dir, dev)
    data = ends.data
    batches = data.train_batches(500, shuffle=False, seed=seed, limit=train_samples)
    start_net, end_net = ends.nets  # START and END
    end_info = sources[1].info
    assert end_info is not None, "describe_endpoints without a --dataset refuses a network without run.json"
    with folder.claim() as out:
        aligned, info = align_networks(start_net, end_net, method=o.method, batches=batches,
                                       example_input=data.example_input(), seed=seed, task=data.task)
        kept = {k: v for k, v in end_info.raw.items() if k not in ("epochs_trained", "full_run")}
        run = {**kept, "aligned_to": str(o.start), "aligned_from": str(o.end), "align": info.to_dict(),
               **split_metrics(aligned, data, speed=o.speed).to_dict()}
        save_tensors(out / "model.safetensors", aligned.state_dict())
        save_tensors(out / "permutation.safetensors", info.permutation)
        write_run(out, run)
    return info

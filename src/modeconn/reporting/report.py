"""One self-contained HTML page (figures embedded) describing whatever results a folder holds."""
from __future__ import annotations

import base64
import contextlib
import html
from pathlib import Path

from ..errors import ModeconnError
from ..evaluation.along import PathEval
from ..evaluation.curvature import CurvatureResult
from ..evaluation.landscape import LandscapeResult
from ..evaluation.simplex_eval import SimplexEval
from ..records import find_records
from ..storage.files import atomic_write
from ..storage.runfolder import read_run
from ..tasks import headline, metric_label
from ..training.fge import FGEResult
from ..training.instability import InstabilityResult

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.8em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.95em}code{background:#f5f5f5;padding:0 .3em}"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _pct(x) -> str:
    return f"{100 * x:.2f}%"


def _show(metric: str, x) -> str:
    """A metric's value as the report writes it: an error in percent, anything else to 4 significant digits."""
    return _pct(x) if metric.endswith("err") else f"{x:.4g}"


def _optional(x) -> str:
    return "" if x is None else f"{x:.4g}"


def _rel(path: Path, root: Path) -> str:
    return html.escape(str(path.relative_to(root)) if path != root else ".")


@contextlib.contextmanager
def _reading(path: Path):
    """Turn a missing or mistyped field met while rendering into a one-line error naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ModeconnError(f"{path} lacks or mistypes a field the report needs ({type(exc).__name__}: {exc}); "
                            "rerun the command that wrote it, or move the file out of the folder") from None


def _inside_instability(path: Path, root: Path) -> bool:
    """Whether a file under ROOT belongs to an instability analysis (its copies and lines have their own section)."""
    return any((p / "spawn").is_dir() and any(p.glob("k*/copy0")) for p in path.parents if root in (p, *p.parents))


def _table(headers: list[str], rows) -> str:
    """An HTML table: header cells as given, body rows of cells already formatted."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _found(root: Path, kind: str) -> list:
    """Every record of this kind under ROOT as (file, record), those inside an instability analysis left out."""
    return [(f, r) for f, r in find_records(root, kind) if not _inside_instability(f, root)]


def _runs(root: Path, kind: str, cells) -> list[list]:
    """One table row, `cells(info)`, per run.json of this kind under ROOT (instability copies left out)."""
    rows = []
    for run, info in _found(root, kind):
        with _reading(run):
            rows.append([_rel(run.parent, root), *cells(info.raw)])
    return rows


def _networks(root: Path) -> str:
    found = _found(root, "network")
    if not found:
        return ""
    intro = ("<h2>The trained networks (endpoints)</h2><p>Each network was trained independently from its own random "
             "initialisation. Their errors are the reference every curve and ensemble below is compared with.</p>")
    if all("test_err" in info.raw and "test_ppl" not in info.raw for _, info in found):  # classification
        rows = _runs(root, "network", lambda i: [html.escape(i["model"]["name"]), i["seed"], _pct(i["train_err"]),
                                                 _pct(i["test_err"]), f"{i['test_loss']:.4f}"])
        return intro + _table(["run", "model", "seed", "train error", "test error", "test loss"], rows)
    rows = _runs(root, "network", lambda i: [  # a task without an error (or a mixed folder): losses, then the rest
        html.escape(i["model"]["name"]), i["seed"], f"{i['train_loss']:.4g}", f"{i['test_loss']:.4g}",
        ", ".join(f"{metric_label(k)} {_show(k, v)}" for k, v in i.items()
                  if k.startswith("test_") and k != "test_loss" and isinstance(v, float))])
    return intro + _table(["run", "model", "seed", "train loss", "test loss", "other test metrics"], rows)


def _curves(root: Path) -> str:
    """The curve runs, each with its midpoint measured when it was trained (connect's own record): what a folder
    shows before eval-curve has measured the curve point by point."""
    def cells(i: dict) -> list:
        lead = headline(k.removeprefix("midpoint_") for k in i if k.startswith("midpoint_"))
        return [html.escape(f"{i['curve']['kind']}, {i['curve']['bends']} bend(s)"),
                html.escape(f"{i['start']} to {i['end']}" if "subspace" not in i
                            else f"trained from scratch as one {i['subspace'].get('shape', 'subspace')}"),
                f"{metric_label(lead)} {_show(lead, i['midpoint_' + lead])}", f"{i['midpoint_train_loss']:.4g}"]
    rows = _runs(root, "curve", cells)
    if not rows:
        return ""
    return ("<h2>Curves trained between networks</h2><p>Each curve was fitted between two trained networks, one "
            "random point of it per minibatch (Garipov et al., 2018). Its midpoint (t = 0.5) was measured when it "
            "was trained, BatchNorm recomputed; <code>eval-curve</code> measures it along its whole length.</p>"
            + _table(["run", "curve", "between", "midpoint test", "midpoint train loss"], rows))


def _ensembles(root: Path) -> str:
    parts = []
    for f, r in _found(root, "ensemble"):
        with _reading(f):
            where = "curve" if r.curve else "simplex" if r.simplex else "span"
            source = r.curve or r.simplex
            members = [m for m in r.members if isinstance(m, dict)]
            lead = headline(members[0]) if members else "test_loss"  # test_err, or test_loss without an error
            best = min(m[lead] for m in members) if members and lead in members[0] else None
            values = ", ".join(f"test {metric_label(k)} {_show(k, v)}" for k, v in r.ensemble.items())
            parts.append(
                f"<h3>{_rel(f, root)}</h3><p>{len(r.members)} networks along the {where} "
                + (f"<code>{html.escape(str(source))}</code> " if source else "")
                + f"(BatchNorm recomputed for each), their predictions averaged: <b>{values}</b>"
                + (f"; the best member alone: {metric_label(lead)} {_show(lead, best)}" if best is not None else "")
                + ".</p>")
    if not parts:
        return ""
    return ("<h2>Ensembles along curves and simplexes</h2><p>Networks taken from a low-loss curve or simplex differ "
            "enough that averaging their predictions beats each of them (Garipov et al., 2018; Benton et al., "
            "2021).</p>" + "".join(parts))


def _simplexes(root: Path) -> str:
    def cells(i: dict) -> list:
        lead = headline(i["metrics"]["vertex0"])  # test_err, or test_loss for a task without an error
        centre = (_show(lead, i[f"centroid_{lead}"]) if f"centroid_{lead}" in i
                  else ", ".join(_show(lead, v) for v in i[f"face_centres_{lead}"]))
        return [_made_by(i), i["vertices"], f"{i['volume']:.4g}", centre,
                ", ".join(_show(lead, i["metrics"][f"vertex{k}"][lead]) for k in range(i["vertices"]))]
    rows = _runs(root, "simplex", cells)
    if not rows:
        return ""
    return ("<h2>Simplexes</h2><p>A simplex grown around a network (SPRO) has the trained network as vertex 0; each "
            "further vertex was trained on points drawn uniformly from the simplex, with a reward for its volume "
            "(Benton et al., 2021). A simplex from scratch trained every vertex from its own initialisation on such "
            "points, its vertices kept apart (Wortsman et al., 2021). Errors with BatchNorm recomputed at each "
            "point.</p>"
            + _table(["run", "made by", "vertices", "volume", "centroid test error or loss (a complex: each face's "
                      "centre)", "vertex test errors or losses"], rows)
            + "".join(_sampled(f, r, root) for f, r in _found(root, "simplex_eval")))


def _made_by(info: dict) -> str:
    """How a simplex run was built, from its run.json."""
    if "subspace" in info:
        return "from scratch"
    if isinstance(info.get("start"), list):
        return f"SPRO, connecting {len(info['start'])} networks"
    return "SPRO, around a curve" if len(info.get("faces") or [[]]) > 1 else "SPRO"


def _sampled(f: Path, r: SimplexEval, root: Path) -> str:
    """What eval-simplex measured at points drawn from a simplex, with the triangle's heat map."""
    with _reading(f):
        lead = headline(r.summary)
        t = r.summary[lead]
        text = (f"<p>{_rel(f.parent, root)}: over points drawn uniformly from the simplex the {metric_label(lead)} "
                f"has mean <b>{_show(lead, t['mean'])}</b>, 5-95% range {_show(lead, t['q05'])} to "
                f"{_show(lead, t['q95'])}, max {_show(lead, t['max'])} (<code>{_rel(f, root)}</code>).</p>")
    png = f.with_suffix(".png")
    return text + (_img(png, f"{metric_label(lead)} over {f.parent.name}") if png.exists() else "")


def _along(root: Path) -> str:
    parts = []
    for f, r in sorted(_found(root, "curve_eval") + _found(root, "line_eval"), key=lambda found: found[0]):
        with _reading(f):
            parts.append(f"<h3>{_rel(f.parent, root)}</h3>{_along_text(r, f, root)}")
    if not parts:
        return ""
    return "<h2>Curves against the straight line</h2>" + "".join(parts)


def _along_text(r: PathEval, f: Path, root: Path) -> str:
    lead = r.headline  # test_err, or test_loss for a task without an error

    def at(path: str, what: str) -> str:
        return _show(lead, r.stat(path, lead, what))
    text = (f"<p>Along the <b>straight line</b> between the two networks the {metric_label(lead)} climbs to "
            f"<b>{at('line', 'max')}</b> (barrier {at('line', 'barrier')} "
            f"above the chord between the endpoints) and the train loss to {r.stat('line', 'train_loss', 'max'):.3g}.")
    run = read_run(f.parent) if r.curve is not None and (f.parent / "run.json").exists() else None
    if run is not None and "subspace" in run.raw:  # trained from scratch: its ends were never separate minima
        shape = html.escape(str(run.raw["subspace"].get("shape")))
        return (f"<p>A <b>{shape}</b> of networks trained from scratch as one subspace (Wortsman et al., 2021): its "
                f"{metric_label(lead)} never exceeds <b>{at('curve', 'max')}</b> (mean over arc length "
                f"{at('curve', 'arc_mean')}); its midpoint is kept as the network run "
                f"<code>{_rel(f.parent / 'midpoint', root)}</code>.</p>" + _along_note(r, f, root))
    if r.curve is not None:
        # run.curve is None where the run.json beside a curve_eval.json is not a curve run's: the
        # AttributeError then becomes _reading's "lacks or mistypes a field" error. Kept as it is.
        kind = run.curve.kind if run is not None else "curve"  # type: ignore[union-attr]
        lengths = r.summary["length"]
        text += (f" Along the trained <b>{html.escape(kind)} curve</b> it never exceeds "
                 f"<b>{at('curve', 'max')}</b> (barrier {at('curve', 'barrier')}; mean over arc length "
                 f"{at('curve', 'arc_mean')}). The two minima are connected by a path of low "
                 f"loss: this is mode connectivity. The curve is {lengths['curve'] / lengths['line']:.2f}× as "
                 f"long as the line.")
    return text + "</p>" + _along_note(r, f, root)


def _along_note(r: PathEval, f: Path, root: Path) -> str:
    bn = r.settings.get("bn_samples")
    recomputed = ("" if r.settings.get("batchnorm") is False else  # older files did not say: BN assumed
                  "; BatchNorm statistics recomputed at every point "
                  f"({'a subset of ' + str(bn) if bn else 'full pass'})")
    text = (f"<p class=note>{len(r.t)} evenly spaced points{recomputed}. Source: <code>{_rel(f, root)}</code>.</p>")
    png = f.with_suffix(".png")
    return text + (_img(png, f"metrics along {f.parent.name}") if png.exists() else "")


PATH_NAMES = {"line": "straight line to b", "weights_line": "line to b aligned by weight matching",
              "activations_line": "line to b aligned by activation matching",
              "weights_line_repair": "weight-matched line with REPAIR", "curve": "curve to b",
              "weights_curve": "curve to the weight-matched b"}


def _connectivity(root: Path) -> str:
    parts = []
    for f, r in _found(root, "paths"):
        with _reading(f):
            lead, word = r.headline, metric_label(r.headline)
            rows = [[html.escape(PATH_NAMES.get(n, n)), _show(lead, r.stat(n, lead, "max")),
                     _show(lead, r.stat(n, lead, "barrier")), _show(lead, r.stat(n, lead, "mean_barrier")),
                     f"{r.stat(n, 'train_loss', 'barrier'):.3g}", f"{r.summary['length'][n]:.3g}"] for n in r.paths()]
            text = ("<p>Hidden units can be relabelled without changing what a network computes. After b's units "
                    "are matched to a's (by their weights, or by their activations on training data), the "
                    "straight line between the two networks crosses a far lower ridge: much of the barrier is a "
                    "symmetry. REPAIR restores the unit statistics that interpolation collapses "
                    f"({html.escape(str(r.settings['repair']))}). Barriers are measured against the chord "
                    "between the endpoints (Frankle et al.) and against the endpoints' mean (Git Re-Basin).</p>"
                    + _table(["path", f"max {word}", f"{word.replace(' ', '-')} barrier (chord)",
                              f"{word.replace(' ', '-')} barrier (mean)", "train-loss barrier", "length"], rows)
                    + f"<p class=note>Source: <code>{_rel(f, root)}</code>.</p>")
        png = f.with_suffix(".png")
        parts.append(f"<h3>{_rel(f.parent, root)}</h3>{text}" + (_img(png, "plain and aligned paths") if png.exists()
                                                                 else ""))
    return "<h2>Is the barrier a symmetry? Aligned networks</h2>" + "".join(parts) if parts else ""


def _planes(root: Path) -> str:
    parts = []
    for f, r in _found(root, "plane"):
        with _reading(f):
            parts.append(_plane_text(r.summary, f, root, headline(r.metrics)))
    return "<h2>Loss surface in a plane</h2>" + "".join(parts) if parts else ""


def _plane_text(s: dict, f: Path, root: Path, lead: str = "test_err") -> str:
    g = s["settings"]["grid"]
    text = (f"<p>Train loss and {metric_label(lead)} over a {g}×{g} grid in the plane through three weight vectors "
            f"(white circles). The dashed line is the straight segment between the first two; ")
    if "curve_max_distance_relative" in s:
        text += (f"the solid curve is the trained curve projected onto the plane (it leaves the plane by at most "
                 f"{100 * s['curve_max_distance_relative']:.2g}% of the endpoints' distance). The low-loss "
                 "valley follows the curve, not the line.")
    else:
        text += "the three networks were given directly."
    text += f"</p><p class=note>Source: <code>{_rel(f, root)}</code>.</p>"
    png = f.with_suffix(".png")
    return f"<h3>{_rel(f.parent, root)}</h3>{text}" + (_img(png, "loss surface plane") if png.exists() else "")


def _section(root: Path, kind: str, title: str, alt: str, render) -> str:
    """One report section: for each record of KIND under ROOT, a heading, `render(record)`'s text and the figure
    beside its file."""
    parts = []
    for f, r in find_records(root, kind):
        with _reading(f):
            text = render(r) + f"<p class=note>Source: <code>{_rel(f, root)}</code>.</p>"
        png = f.with_suffix(".png")
        parts.append(f"<h3>{_rel(f.parent, root)}</h3>{text}" + (_img(png, alt) if png.exists() else ""))
    return f"<h2>{title}</h2>" + "".join(parts) if parts else ""


def _landscape_text(r: LandscapeResult) -> str:
    """What a landscape slice shows."""
    s = r.summary
    c = s["centre"]
    where = (f"the point t = {c['t']:g} of the curve <code>{html.escape(c['curve'])}</code>" if "curve" in c
             else f"the network <code>{html.escape(c['network'])}</code>")
    kind = ("the two principal directions of its training trajectory "
            f"(<code>{html.escape(s['trajectory'])}</code>, explaining "
            f"{100 * sum(s['explained_variance']):.1f}% of its variance)" if s["directions"] == "pca" else
            f"{s['dims']} filter-normalised random direction(s) (Li et al. 2018, seed {s['settings']['seed']})")
    lo, hi = s["train_loss_range"]
    text = (f"<p>Train loss and {metric_label(headline(r.metrics))} around {where}, along {kind}, on a "
            f"{'×'.join([str(s['settings']['grid'])] * s['dims'])} grid"
            + ("" if s.get("batchnorm") == "none" else "; BatchNorm statistics recomputed at every point")
            + f". The train loss ranges from {lo:.3g} to {hi:.3g}.</p>")
    return text


def _curvature_text(r: CurvatureResult) -> str:
    """The curvature table of one run."""
    rows = [[html.escape(name), f"{t:.2f}", ", ".join(f"{v:.4g}" for v in x["eigenvalues"])
             + (" (estimates)" if x.get("converged") is False else ""), _optional(x["trace"]),
             f"{x['train_loss']:.4f}"] for name, xs in r.paths.items() for t, x in zip(r.t, xs)]
    unconverged = sum(x.get("converged") is False for xs in r.paths.values() for x in xs)
    return (f"<p>The Hessian of the train loss at each point, {html.escape(r.hessian)}, both from "
            f"Hessian-vector products. BatchNorm: {html.escape(r.batchnorm)}."
            + (f" At {unconverged} point(s) Lanczos stopped at its step limit before converging: those eigenvalues "
               "are estimates (rerun with more --steps)." if unconverged else "") + "</p>"
            + _table(["path", "t", "top eigenvalues", "trace", "train loss"], rows))


def _instability_text(r: InstabilityResult) -> str:
    """The barrier table of one instability analysis."""
    lead = r.headline  # test_err, or test_loss for a task without an error
    word = metric_label(lead).replace(" ", "-")
    rows = [[x["spawn"], _show(lead, x[f"{lead}_barrier"]), f"{x['train_loss_barrier']:.4f}",
             "yes" if x["stable"] else "no"] for x in r.per_spawn]
    first = r.first_stable_spawn
    rule = (f"test-error barrier under {_pct(r.stable_below)}, Frankle et al. 2020" if lead == "test_err" else
            f"test-loss barrier under {_pct(r.stable_below)} of the copies' mean test loss")
    text = (f"<p>One {html.escape(r.model)} trained on {html.escape(r.dataset)}; at each spawn epoch two "
            f"copies continued to epoch {r.config['epochs']} with their own data orders. Copies are "
            f"linearly connected ({rule}) "
            + (f"from epoch <b>{first}</b> on." if first is not None else "at none of the spawn epochs.")
            + "</p>" + _table(["spawn epoch", f"{word} barrier", "train-loss barrier", "stable"], rows))
    return text


def _fge(root: Path) -> str:
    parts = []
    for f, r in find_records(root, "fge"):
        assert isinstance(r, FGEResult)  # find reads each kind with its record class
        with _reading(f):
            parts.append(f"<h3>{_rel(f.parent, root)}</h3>{_fge_text(r, f)}")
    for f, _ in find_records(root, "budget"):
        table = f.with_name("budget.md")  # written once every seed is done
        if table.is_file():
            parts.append("<h3>Equal-budget comparison</h3><pre>" + html.escape(table.read_text()) + "</pre>")
    return "<h2>Fast Geometric Ensembling</h2>" + "".join(parts) if parts else ""


def _fge_text(r: FGEResult, f: Path) -> str:
    if r.snapshots and "ensemble_test_nll" not in r.snapshots[0]:  # classification's own, with err and ece
        return _fge_text_of_any_task(r, f)
    rows = [[x["snapshot"], x["epoch"], f"{x['lr']:.2g}", _pct(x["test_err"]), f"{x['test_nll']:.4f}",
             _pct(x["ensemble_test_err"]), f"{x['ensemble_test_nll']:.4f}", f"{x['ensemble_test_ece']:.4f}"]
            for x in r.snapshots]
    last = r.snapshots[-1] if r.snapshots else None
    text = ""
    if last:
        text = (f"<p>Starting from <code>{html.escape(str(r.start))}</code> (test error "
                f"{_pct(r.start_test_err) if r.start_test_err is not None else '?'}), FGE ran SGD with a "
                f"cyclic learning rate between {r.config['lr1']} and {r.config['lr2']} for "
                f"{r.config['epochs']} epochs and kept a snapshot at each cycle's low point. Averaging the "
                f"{len(r.snapshots)} snapshots' predicted probabilities gives test error "
                f"<b>{_pct(last['ensemble_test_err'])}</b> and NLL <b>{last['ensemble_test_nll']:.4f}</b>.")
        full = Path(r.start_full_run) / "run.json" if r.start_full_run else None
        net = read_run(full).raw if full is not None and full.exists() else None
        spent = (r.start_epochs_trained or 0) + r.config["epochs"]
        if net is not None and net.get("epochs_trained") == spent:  # the same budget: a fair comparison
            assert full is not None  # net was read from it
            verdict = "beats" if (last["ensemble_test_err"] <= net["test_err"]
                                  and last["ensemble_test_nll"] < net["test_loss"]) else "does not beat"
            text += (f" For the same {spent} epochs of training, the single network "
                     f"<code>{html.escape(full.parent.name)}</code> reaches test error {_pct(net['test_err'])} and "
                     f"NLL {net['test_loss']:.4f}: here FGE {verdict} it on both.")
        if r.swa:
            text += (f" Averaging their weights instead (SWA) gives {_pct(r.swa['test_err'])}, "
                     f"NLL {r.swa['test_nll']:.4f}.")
        text += "</p>"
    table = _table(["snapshot", "epoch", "lr", "its test error", "its NLL", "ensemble error", "ensemble NLL",
                    "ensemble ECE"], rows)
    png = f.with_suffix(".png")
    return f"{text}{table}" + (_img(png, "FGE") if png.exists() else "")


def _fge_text_of_any_task(r: FGEResult, f: Path) -> str:
    """FGE of a task without an error: each snapshot's and the ensemble's metrics, as its records name them."""
    own = [k for k in r.snapshots[0] if k.startswith("test_")]
    ensemble = [k for k in r.snapshots[0] if k.startswith("ensemble_test_")]
    rows = [[x["snapshot"], x["epoch"], f"{x['lr']:.2g}", *(f"{x[k]:.4g}" for k in own + ensemble)]
            for x in r.snapshots]
    last = r.snapshots[-1]
    text = (f"<p>Starting from <code>{html.escape(str(r.start))}</code>, FGE ran SGD with a cyclic learning rate "
            f"between {r.config['lr1']} and {r.config['lr2']} for {r.config['epochs']} epochs and kept a snapshot at "
            f"each cycle's low point. Averaging the {len(r.snapshots)} snapshots' predictions gives "
            + ", ".join(f"{metric_label(k.removeprefix('ensemble_'))} <b>{last[k]:.4g}</b>" for k in ensemble) + ".")
    if r.swa:
        text += " Averaging their weights instead (SWA) gives " + ", ".join(
            f"{metric_label(k)} {v:.4g}" for k, v in r.swa.items() if k.startswith("test_")) + "."
    table = _table(["snapshot", "epoch", "lr", *(f"its {metric_label(k)}" for k in own),
                    *(f"ensemble {metric_label(k.removeprefix('ensemble_'))}" for k in ensemble)], rows)
    png = f.with_suffix(".png")
    return f"{text}</p>{table}" + (_img(png, "FGE") if png.exists() else "")


def render_report(root) -> Path:
    """Write ROOT/report.html describing every modeconn result found under ROOT."""
    root = Path(root)
    if not root.is_dir():
        raise ModeconnError(f"{root} is not a folder: pass a folder holding modeconn runs")
    body = "".join([_networks(root), _curves(root), _along(root), _ensembles(root), _simplexes(root),
                    _connectivity(root), _planes(root),
                    _section(root, "landscape", "Slices of the loss landscape", "landscape slice",
                             _landscape_text),
                    _section(root, "curvature", "Curvature along paths", "curvature", _curvature_text),
                    _section(root, "instability", "When do networks become linearly connected? (instability "
                             "analysis)", "instability", _instability_text),
                    _fge(root)])
    if not body:
        raise ModeconnError(f"{root} holds no modeconn results (run.json, curve_eval.json, ensemble.json, paths.json, "
                            "plane.json, landscape.json, curvature.json, instability.json, fge.json)")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>modeconn report: {html.escape(root.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>modeconn report: {html.escape(root.name)}</h1>"
            "<p>Two networks trained from different random seeds end in different minima of the loss. The straight "
            "line between them crosses a ridge of high loss, yet a simple curve between them keeps the loss low "
            "all the way (Garipov et al., 2018). This page shows what the folder holds of that geometry: curves "
            "against lines, simplexes grown around a network, planes through networks, whether the barrier is a "
            "permutation symmetry, slices and "
            "curvature around a network or a curve, when in training networks become linearly connected, and "
            "the cheap ensemble (FGE) that the same geometry suggests.</p>"
            f"{body}<p class=note>Generated by modeconn from <code>{html.escape(str(root))}</code>.</p></body></html>")
    out = root / "report.html"
    atomic_write(out, page.encode())
    return out

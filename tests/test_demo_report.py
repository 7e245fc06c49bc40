"""The demo's report: one self-contained page that a real browser renders with every image loaded."""
import shutil
import subprocess
import sys

import pytest

from modeconn.commands import eval_curve, plane
from modeconn.reporting.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


@pytest.fixture(scope="module")
def report(mnist1d_runs, tmp_path_factory):
    root = mnist1d_runs["root"]
    if not (root / "ab" / "curve_eval.json").exists():
        eval_curve(root / "ab", points=11, device="cpu", progress=False)
    if not (root / "plane" / "plane.json").exists():
        plane(root / "plane", curve=root / "ab", grid=5, device="cpu", progress=False)
    r = subprocess.run([sys.executable, "-m", "modeconn", "fge", "--start", str(root / "a"), "--epochs", "4",
                        "--cycle", "2", "--out", str(root / "fge"), "--quiet", "--no-snapshots"],
                       capture_output=True, text=True)
    assert r.returncode == 0 or "already holds" in r.stderr, r.stderr
    return render_report(root)


def test_report_is_self_contained_and_says_what_it_found(report):
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3  # curve vs line, plane, FGE
    assert "src=\"http" not in page and "<script" not in page
    for words in ("straight line", "mode connectivity", "Fast Geometric Ensembling", "test error"):
        assert words in page


def test_report_refuses_an_empty_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "modeconn", "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "holds no modeconn results" in r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it, as root)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    # A copy with a probe script: the page itself carries no script.
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>", "<script>window.onload=()=>{const ok=[...document.images].every(i=>i.complete&&i.naturalWidth>0);"
                   "document.title=(ok&&document.images.length===3)?'ALL-IMAGES-LOADED':'BROKEN';}</script></body>"))
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert "<title>ALL-IMAGES-LOADED</title>" in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    "--window-size=1200,2400", report.as_uri()], capture_output=True, text=True, timeout=120)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not a blank page
    assert (pixels[..., :3].mean(-1) < 0.5).mean() > 0.01  # some dark ink: text and figures

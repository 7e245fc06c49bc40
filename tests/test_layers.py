"""The package's layers hold where a user feels them: importing modeconn changes nothing outside it."""
import subprocess
import sys


def test_importing_modeconn_leaves_matplotlib_as_the_user_set_it():
    """No backend switch and no pyplot at import: a notebook's inline backend stays (figures are Figure objects)."""
    code = ("import sys, matplotlib; matplotlib.use('svg'); import modeconn, modeconn.cli, modeconn.reporting.plots, "
            "modeconn.reporting.report; assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_figure_is_drawn_to_png_through_the_figure_api(tmp_path):
    import numpy as np

    from modeconn.reporting.plots import plot_triangle

    plot_triangle(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1 / 3, 1 / 3, 1 / 3]]),
                  np.array([0.1, 0.2, 0.3, 0.15]), [0.1, 0.2, 0.3], tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

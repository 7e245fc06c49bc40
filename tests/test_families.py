import math

import pytest
import torch

from modeconn.core.families import coefficients
from modeconn.errors import ModeconnError

TS = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.7, 1.0])


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("num_points", [2, 3, 4, 6])
def test_coefficients_sum_to_one_and_hit_endpoints(kind, num_points):
    c = coefficients(kind, TS, num_points)
    assert c.shape == (len(TS), num_points)
    torch.testing.assert_close(c.sum(1), torch.ones(len(TS), dtype=torch.float64))
    assert (c >= 0).all()
    assert c[0, 0] == 1 and c[-1, -1] == 1


def test_quadratic_bezier_matches_formula():
    for t in TS.tolist():
        c = coefficients("bezier", t, 3)
        expected = torch.tensor([(1 - t) ** 2, 2 * t * (1 - t), t**2], dtype=torch.float64)
        torch.testing.assert_close(c, expected)


def test_cubic_bezier_matches_bernstein():
    t = 0.3
    c = coefficients("bezier", t, 4)
    expected = [math.comb(3, k) * t**k * (1 - t) ** (3 - k) for k in range(4)]
    torch.testing.assert_close(c, torch.tensor(expected, dtype=torch.float64))


def test_one_bend_polychain_matches_paper_formula():
    # phi(t) = 2(t theta + (0.5 - t) w1) for t <= 0.5; 2((t - 0.5) w2 + (1 - t) theta) after.
    for t in TS.tolist():
        c = coefficients("polychain", t, 3)
        if t <= 0.5:
            expected = [2 * (0.5 - t), 2 * t, 0.0]
        else:
            expected = [0.0, 2 * (1 - t), 2 * (t - 0.5)]
        torch.testing.assert_close(c, torch.tensor(expected, dtype=torch.float64))


def test_zero_bends_is_the_line_for_both_families():
    line = torch.stack([1 - TS, TS], 1).double()
    torch.testing.assert_close(coefficients("bezier", TS, 2), line)
    torch.testing.assert_close(coefficients("polychain", TS, 2), line)


def test_unknown_family_is_refused():
    with pytest.raises(ModeconnError, match="unknown curve kind"):
        coefficients("spline", 0.5, 3)

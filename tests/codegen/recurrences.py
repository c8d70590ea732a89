"""recur's scalar recurrence x <- sin(x) x + c (symgrad bench's ``recur``), its value and
derivatives by a reverse pass written out in plain Python, and the check of a compiled value and
gradient against them, shared by the compiler's tests of rolled loops, scalar twins and forward
mode."""

import math

import numpy as np

import symgrad as sg

# converging maps (the map is chaotic elsewhere); beyond pi/4 (libm's branch of the twins), zero
POINTS = [(0.3, 0.1), (-0.7, 0.05), (0.9, -0.3), (1.2, 0.2), (2.5, 0.0), (0.0, 0.0)]


def chain(depth, x0, c):
    """x0 stepped ``depth`` times: x <- sin(x) x + c."""
    x = x0
    for _ in range(depth):
        x = sg.sin(x) * x + c
    return x


def recurrence(depth):
    """(the chain of ``depth`` steps, x0, c) over new scalars x0 and c."""
    x0, c = sg.scalars("x0 c")
    return chain(depth, x0, c), x0, c


def by_hand(depth, x0, c):
    """The value and (d/dx0, d/dc) by a reverse pass written out."""
    xs = [x0]
    for _ in range(depth):
        xs.append(math.sin(xs[-1]) * xs[-1] + c)
    dx, dc = 1.0, 0.0
    for xk in reversed(xs[:-1]):
        dc += dx
        dx *= math.cos(xk) * xk + math.sin(xk)
    return xs[-1], dx, dc


def check(vg, depth, reference=None, points=POINTS):
    """``vg(x0, c)`` -> (value, (d_x0, d_c)) against ``by_hand`` and ``reference`` (a function
    giving the three numbers another way) to 1e-12, and its gradient against central differences."""
    for args in points:
        value, (d_x0, d_c) = vg(*args)
        got = [value, d_x0, d_c]
        if reference is not None:
            np.testing.assert_allclose(got, reference(*args), rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(got, by_hand(depth, *args), rtol=1e-12, atol=1e-300)
        h = 1e-6
        f = lambda a, b: by_hand(depth, a, b)[0]  # noqa: E731
        central = [
            (f(args[0] + h, args[1]) - f(args[0] - h, args[1])) / (2 * h),
            (f(args[0], args[1] + h) - f(args[0], args[1] - h)) / (2 * h),
        ]
        np.testing.assert_allclose([d_x0, d_c], central, rtol=1e-6, atol=1e-8)

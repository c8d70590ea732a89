"""A scalar recurrence's kernel (recur's x = sin(x) x + c). In a rolled loop's body the numba
backend calls the runtime's scalar arithmetic twins ``_rt.ssin`` / ``_rt.scos`` (the op record's
``serial``; cached functions, not inlined), whose latency on the recurrence's chain is below
libm's call. They are checked against numpy within 1 ulp; the compiled recurrence against the
numpy backend's unrolled graph and central differences, at depths below and above the rolling
threshold."""

import math
import re

import numba
import numpy as np
import pytest

import symgrad as sg
import symgrad.codegen.numba_runtime as rt
from symgrad.codegen.schedule import ROLL_MIN_STATEMENTS
from symgrad.ops.registry import OPS

from recurrences import check, recurrence


@numba.njit(error_model="numpy")
def _each(f, a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = f(a[i])
    return out


def _points():
    rng = np.random.default_rng(7)
    pio4 = math.pi / 4
    edges = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e-8, -1e-8, 1.0, -1.0]
    edges += [np.nextafter(pio4, s) for s in (0.0, 4.0)] + [pio4, -pio4, -np.nextafter(pio4, 4.0)]
    edges += [2.0, -3.0, 100.0, 1e6, 1e22, -1e300, 1.7976931348623157e308, np.inf, -np.inf, np.nan]
    return np.concatenate(
        [edges, np.linspace(-1.0, 1.0, 20_001), rng.uniform(-pio4, pio4, 20_000), rng.uniform(-50, 50, 2_000)]
    )


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_serial_sin_and_cos_are_within_one_ulp_of_numpy(name):
    x = _points()
    got = _each(getattr(rt, "s" + name), x)
    with np.errstate(invalid="ignore"):
        want = getattr(np, name)(x)
    same = np.isnan(got) == np.isnan(want)
    assert same.all(), x[~same]
    ok = ~np.isnan(want)
    ulps = np.abs(got[ok] - want[ok]) / np.spacing(np.abs(want[ok]))
    assert ulps.max() <= 1.0, (x[ok][ulps.argmax()], ulps.max())
    if name == "sin":
        # sin keeps the sign of zero (and of the smallest subnormals)
        assert np.array_equal(np.signbit(got[:4]), np.signbit(x[:4]))


def _small_points():
    """Points of the twins' shorter polynomials (|x| <= rt._SIN_SMALL) and around its bound."""
    rng = np.random.default_rng(11)
    bound = rt._SIN_SMALL
    edges = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -1e-300, 1e-20, -1e-8, 1e-3]
    for b in (bound, -bound):
        edges += [b, np.nextafter(b, 0.0), np.nextafter(b, 2 * b)]
    return np.concatenate(
        [
            edges,
            rng.uniform(-bound, bound, 6_000),
            np.linspace(bound * 0.98, bound * 1.02, 2_001),  # the last of the short path, the first beyond
            np.geomspace(1e-12, bound, 2_000) * rng.choice([-1.0, 1.0], 2_000),
        ]
    )


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_serial_sin_and_cos_are_within_one_ulp_of_mpmath_on_and_around_the_short_polynomials(name):
    """|x| <= rt._SIN_SMALL (0.15) takes polynomials of degree 9 and 10 (four dependent steps from x to sin x, not
    five): the error against mpmath's value in units of the result's last place, at random points,
    near the bound on both sides, at tiny and subnormal x and at zeros."""
    mpmath = pytest.importorskip("mpmath")
    x = _small_points()
    got = _each(getattr(rt, "s" + name), x)
    exact = getattr(mpmath, name)
    with mpmath.workdps(40):
        err = [abs(mpmath.mpf(float(g)) - exact(mpmath.mpf(float(v)))) for g, v in zip(got, x)]
        ulps = [
            float(e / mpmath.mpf(float(np.spacing(abs(float(g)))))) if g != 0 else float(e)
            for e, g in zip(err, got)
        ]
    assert max(ulps) < 1.0, (x[int(np.argmax(ulps))], max(ulps))
    assert np.mean(np.array(ulps) > 0.5) < 0.01  # nearly all correctly rounded, as the longer polynomial's
    if name == "sin":
        assert np.array_equal(np.signbit(got[:4]), np.signbit(x[:4]))  # -0.0 and the sign of subnormals kept
        assert np.array_equal(got[2:4], x[2:4])
    else:
        assert (got[:2] == 1.0).all()


def test_the_short_polynomials_approximate_sin_and_cos_to_a_hundredth_of_an_ulp():
    """The fitted coefficients as rounded to float64, in exact arithmetic (no rounding of the
    evaluation): x + x^3 P(x^2) against sin x, and 1 - x^2/2 + x^4 Q(x^2) against cos x, relative,
    over |x| <= rt._SIN_SMALL (the evaluation's roundings come on top: the test above)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        worst_sin = worst_cos = mpmath.mpf(0)
        for k in range(1, 801):
            x = mpmath.mpf(rt._SIN_SMALL) * k / 800
            z = x * x
            p = sum(mpmath.mpf(c) * z**i for i, c in enumerate(rt._SIN_SMALL_P))
            q = sum(mpmath.mpf(c) * z**i for i, c in enumerate(rt._COS_SMALL_P))
            worst_sin = max(worst_sin, abs((x + x * z * p) / mpmath.sin(x) - 1))
            worst_cos = max(worst_cos, abs((1 - z / 2 + z * z * q) / mpmath.cos(x) - 1))
    assert worst_sin < 1e-18 and worst_cos < 1e-20  # 2^-53 is 1.1e-16
    # and the same polynomials as the plain Taylor series up to their degree, to about their size
    assert rt._SIN_SMALL_P[0] == pytest.approx(-1 / 6, rel=1e-13)
    assert rt._COS_SMALL_P[0] == pytest.approx(1 / 24, rel=1e-13)


def test_only_sin_and_cos_say_serial():
    # the emitter spells a serial op _rt.s<name>: the runtime must have each
    assert {name for name, op in OPS.items() if op.serial} == {"sin", "cos"}
    for name in ("sin", "cos"):
        assert isinstance(getattr(rt, "s" + name), numba.core.dispatcher.Dispatcher)


def _loop_bodies(source):
    """The text of each ``for`` loop's body of ``source``'s kernel (by indentation)."""
    lines = source[source.index("def kernel(") : source.index("kernel_entry = ")].splitlines()
    bodies = []
    for i, line in enumerate(lines):
        head = re.match(r"( *)for ", line)
        if head:
            body = []
            for inner in lines[i + 1 :]:
                if inner.strip() and len(inner) - len(inner.lstrip()) <= len(head.group(1)):
                    break
                body.append(inner)
            bodies.append("\n".join(re.sub(r"#.*", "", b) for b in body))  # code, no comments
    return bodies


def test_a_rolled_recurrence_calls_no_libm_sin_or_cos_in_its_loops():
    expr, x0, c = recurrence(40)
    b = sg.scalar("b")
    # three inputs: reverse mode (two or fewer step forward: tests/codegen/test_forward_gradient.py)
    vg = sg.value_and_grad(expr * b, wrt=[x0, c, b], backend="numba")
    forward, backward, *rest = _loop_bodies(vg.source)
    assert "_rt.ssin(" in forward and "_rt.scos(" in forward  # cos(x_t) for the reverse sweep
    for body in (forward, backward, *rest):
        assert not re.search(r"np\.(sin|cos)\(", body)
    # the reverse sweep is arithmetic: its local derivatives come from the forward loop
    assert not re.search(r"\.\w*(sin|cos)\w*\(", backward)
    # outside the loops scalar code calls libm (no cached function linked for one call)
    assert "np.sin(" in vg.source and "np.cos(" in vg.source


# below the rolling threshold (3 statements a step), just above it, and deep
@pytest.mark.parametrize("depth", [5, ROLL_MIN_STATEMENTS // 3 + 2, 200])
def test_recurrence_values_and_gradients_at_several_depths(depth):
    expr, x0, c = recurrence(depth)
    compiled = sg.value_and_grad(expr, wrt=[x0, c], backend="numba")
    unrolled = sg.value_and_grad(expr, wrt=[x0, c], backend="numpy")
    assert ("for k in range" in compiled.source) == (depth * 3 >= ROLL_MIN_STATEMENTS)

    def reference(*args):
        value, (d_x0, d_c) = unrolled(*args)
        return [value, d_x0, d_c]

    check(compiled, depth, reference)


def test_a_float32_recurrence_keeps_libm_in_its_loops():
    # the scalar twins are float64 functions: a float32 loop body calls numpy's float32 sin and cos
    x0, c = sg.scalar("x0", dtype="float32"), sg.scalar("c", dtype="float32")
    x = x0
    for _ in range(40):
        x = sg.sin(x) * x + c
    vg = sg.value_and_grad(x, wrt=[x0, c], backend="numba")
    assert "for k in range" in vg.source and "_rt.ssin(" not in vg.source and "_rt.scos(" not in vg.source
    want = sg.value_and_grad(x, wrt=[x0, c], backend="numpy")(np.float32(0.3), np.float32(0.1))
    got = vg(np.float32(0.3), np.float32(0.1))
    np.testing.assert_allclose([got[0], *got[1]], [want[0], *want[1]], rtol=1e-5, atol=1e-30)

"""User-defined derivative rules: sg.custom_vjp, sg.custom_jvp and sg.register_op.

Every value, gradient and Hessian is checked against an independent truth: central differences
of the function's own numpy value, closed forms, or scipy.special's Bessel functions."""

import math
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy.special

import symgrad as sg
from symgrad.frontends import parse as parse_module
from symgrad.ops.registry import OPS

BACKENDS = ["numpy", "numba"]


def central(f, x, h=1e-6):
    """d f / d x by central differences, elementwise for an array x (f of an array, summed)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


# ---------------------------------------------------------------- custom_vjp: a clipped gradient


@sg.custom_vjp
def clip_gradient(x):
    return x


def _clip_fwd(x):
    return x, ()


def _clip_bwd(res, g):
    return (np.clip(g, -1.0, 1.0),)  # numpy code: traces on the cotangent


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def _clip_loss_np(w):
    return np.sum(np.sin(w) * w**2)


def _clip_grad_truth(w):
    # the loss is sum(clip_gradient(u)) with u = sin(w) w^2: the cotangent of u (1) is inside the
    # clip, so the gradient is the plain one, and the Hessian too
    return np.cos(w) * w**2 + 2 * w * np.sin(w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clipped_gradient_clips_the_cotangent_from_the_builder(backend):
    x = sg.tensor("x", (3,))
    y = sg.sum(clip_gradient(x * 5.0) ** 2)  # d/dx = clip(2 * 5x) * 5
    f = sg.compile([y, sg.grad(y, x)], backend=backend)
    xv = np.array([0.01, 0.05, -0.3])
    value, g = f(xv)
    np.testing.assert_allclose(value, np.sum((5 * xv) ** 2))
    np.testing.assert_allclose(g, np.clip(2 * 5 * xv, -1, 1) * 5)
    # unclipped there (|2 * 5 x| <= 1): the gradient is the true one
    np.testing.assert_allclose(g[:2], central(lambda v: np.sum((5 * v) ** 2), xv)[:2], rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clipped_gradient_from_traced_numpy_code_and_its_hessian(backend):
    def loss(w):
        return np.sum(clip_gradient(np.sin(w) * w**2))

    wv = np.array([0.3, -0.7, 1.1])
    value, g = sg.value_and_grad(loss, backend=backend)(wv)
    np.testing.assert_allclose(value, _clip_loss_np(wv))
    np.testing.assert_allclose(g, central(_clip_loss_np, wv), rtol=1e-6)
    # the clip's bwd is not linear in g, so it has no forward mode: the Hessian is reverse over reverse
    w = sg.tensor("w", (3,))
    H = sg.hessian(loss(w), [w])[0][0]
    Hv = sg.compile(H, backend=backend)(wv)
    # separable: the Hessian is diagonal, its diagonal the derivative of each gradient entry
    np.testing.assert_allclose(Hv, np.diag(central(lambda v: np.sum(_clip_grad_truth(v)), wv)), atol=1e-6)
    np.testing.assert_allclose(sg.hessian(loss, backend=backend)(wv), Hv, rtol=1e-12)


def test_clipped_gradient_has_no_forward_mode():
    x = sg.scalar("x")
    with pytest.raises(sg.UnsupportedError, match="clip_gradient: its bwd is not linear in the cotangent"):
        sg.jvp(clip_gradient(x), [x], [sg.constant(1.0)])


def test_custom_vjp_on_plain_arrays_runs_the_function():
    np.testing.assert_array_equal(clip_gradient(np.array([1.0, 2.0])), [1.0, 2.0])


# ---------------------------------------------------------------- custom_vjp with a linear rule: both modes


@sg.custom_vjp
def scaled_product(a, b):
    return a * b


def _sp_fwd(a, b):
    return a * b, (a, b)


def _sp_bwd(res, g):
    a, b = res
    return g * b, g * a


scaled_product.defvjp(_sp_fwd, _sp_bwd)


@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_vjp_with_residuals_forward_and_reverse_and_hessian(backend):
    a, b = sg.tensor("a", (2,)), sg.tensor("b", (2,))
    y = sg.sum(scaled_product(sg.sin(a), b) ** 2)
    av, bv = np.array([0.4, 1.3]), np.array([-0.5, 2.0])

    def truth(av, bv):
        return np.sum((np.sin(av) * bv) ** 2)

    ga, gb = sg.compile(sg.grad(y, [a, b]), backend=backend)(av, bv)
    np.testing.assert_allclose(ga, central(lambda v: truth(v, bv), av), rtol=1e-6)
    np.testing.assert_allclose(gb, central(lambda v: truth(av, v), bv), rtol=1e-6)
    # forward mode: the transpose of bwd
    t = sg.jvp(y, [a, b], [sg.constant(np.array([1.0, 0.0])), sg.constant(np.array([0.0, 1.0]))])
    tv = sg.compile(t, backend=backend)(av, bv)
    np.testing.assert_allclose(tv, ga[0] + gb[1], rtol=1e-9)
    # the Hessian (forward over reverse) against central differences of the true gradient
    H = sg.hessian(y, [a])[0][0]
    Hv = sg.compile(H, backend=backend)(av, bv)

    def grad_a(v):
        return 2 * np.sin(v) * bv**2 * np.cos(v)

    np.testing.assert_allclose(
        np.diag(Hv),
        [
            central(lambda s: grad_a(np.r_[s, av[1]])[0], av[:1])[0],
            central(lambda s: grad_a(np.r_[av[0], s])[1], av[1:])[0],
        ],
        rtol=1e-5,
    )
    np.testing.assert_allclose(Hv - np.diag(np.diag(Hv)), 0, atol=1e-12)


# ---------------------------------------------------------------- custom_jvp: a stable log1pexp


@sg.custom_jvp
def log1pexp(x):
    return np.log(1.0 + np.exp(x))  # traced numpy code


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * (1.0 - 1.0 / (1.0 + np.exp(x)))


def _log1pexp_np(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return scipy.special.expit(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log1pexp_gradient_is_the_rule_and_finite_for_large_inputs(backend):
    x = sg.tensor("x", ("n",))
    y = sg.sum(log1pexp(x))
    f = sg.compile([y, sg.grad(y, x)], backend=backend)
    xv = np.array([-3.0, 0.2, 4.0, 50.0, 800.0])
    value, g = f(xv)
    np.testing.assert_allclose(value, np.sum(_log1pexp_np(xv)))
    np.testing.assert_allclose(g, _sigmoid(xv), rtol=1e-12)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[:3], central(lambda v: np.sum(_log1pexp_np(v)), xv[:3]), rtol=1e-6)


def test_a_custom_call_prints_as_the_functions_call():
    x = sg.tensor("x", (3,))
    assert repr(sg.sum(log1pexp(x * 2.0))) == "sum(log1pexp(x * 2.0))"
    assert repr(clip_gradient(x)) == "clip_gradient(x)"


@pytest.mark.parametrize("backend", BACKENDS)
def test_log1pexp_forward_mode_hessian_and_tracing(backend):
    def loss(w):
        return np.sum(log1pexp(w * w))

    wv = np.array([0.5, -1.2, 2.0])

    def truth(v):
        return np.sum(_log1pexp_np(v * v))

    value, g = sg.value_and_grad(loss, backend=backend)(wv)
    np.testing.assert_allclose(value, truth(wv))
    np.testing.assert_allclose(g, central(truth, wv), rtol=1e-6)
    w = sg.tensor("w", (3,))
    t = sg.jvp(loss(w), [w], [sg.constant(np.ones(3))])
    np.testing.assert_allclose(sg.compile(t, backend=backend)(wv), np.sum(central(truth, wv)), rtol=1e-6)
    H = sg.compile(sg.hessian(loss(w), [w])[0][0], backend=backend)(wv)

    def grad_truth(v):
        return 2 * v * _sigmoid(v * v)

    np.testing.assert_allclose(H, np.diag(central(lambda v: np.sum(grad_truth(v)), wv)), atol=1e-6)
    # the function API traces the same function: sg.hessian(fn)
    np.testing.assert_allclose(sg.hessian(loss, backend=backend)(wv), H, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_users_rule_is_the_derivative_not_the_primal_functions(backend):
    # a rule that deliberately differs from the function's own derivative: both modes and the
    # second derivative follow the rule (d/dx = 2 cos x, d2/dx2 = -2 sin x), not sin's
    @sg.custom_jvp
    def sin_rule_doubled(x):
        return sg.sin(x)

    sin_rule_doubled.defjvp(lambda p, t: (sg.sin(p[0]), 2.0 * sg.cos(p[0]) * t[0]))
    x = sg.scalar("x")
    y = sin_rule_doubled(x)
    f = sg.compile(
        [y, sg.grad(y, x), sg.jvp(y, [x], [sg.constant(1.0)]), sg.hessian(y, [x])[0][0]], backend=backend
    )
    value, g, t, h = f(0.4)
    np.testing.assert_allclose(
        [value, g, t, h], [np.sin(0.4), 2 * np.cos(0.4), 2 * np.cos(0.4), -2 * np.sin(0.4)]
    )


def test_custom_jvp_nondiff_argnums_are_static():
    # a static first argument (JAX's nondiff_argnums) comes first in the rule's arguments
    def f(k, x):
        return k * sg.softplus(x)

    g = sg.custom_jvp(f, nondiff_argnums=(0,))
    g.defjvp(lambda k, primals, tangents: (f(k, *primals), k * tangents[0] * sg.sigmoid(primals[0])))
    x = sg.scalar("x")
    gv = sg.compile(sg.grad(g(3, x), x))(0.7)
    np.testing.assert_allclose(gv, 3 * _sigmoid(0.7))


# ---------------------------------------------------------------- custom rule errors


def test_bwd_returning_the_wrong_number_of_cotangents_is_an_error():
    @sg.custom_vjp
    def f(a, b):
        return a * b

    f.defvjp(lambda a, b: (a * b, (a, b)), lambda res, g: g * res[1])
    a, b = sg.scalars("a b")
    with pytest.raises(
        sg.UnsupportedError, match=r"custom_vjp function .*f: bwd must return a tuple of 2 cotangent"
    ):
        sg.grad(f(a, b), a)


def test_bwd_cotangent_of_the_wrong_shape_is_an_error():
    @sg.custom_vjp
    def f(v):
        return sg.sum(v)

    f.defvjp(lambda v: (sg.sum(v), ()), lambda res, g: (g,))
    v = sg.tensor("v", (3,))
    with pytest.raises(
        sg.ShapeError,
        match=r"bwd's cotangent for argument 0 has shape \(\), but the argument has shape \(3,\)",
    ):
        sg.grad(f(v), v)


def test_jvp_rule_tangent_of_the_wrong_shape_is_an_error():
    @sg.custom_jvp
    def f(v):
        return v * 2.0

    f.defjvp(lambda p, t: (p[0] * 2.0, sg.sum(t[0])))
    v = sg.tensor("v", (3,))
    with pytest.raises(sg.ShapeError, match=r"tangent_out has shape \(\), but the output has shape \(3,\)"):
        sg.grad(sg.sum(f(v)), v)


def test_custom_rule_call_errors():
    x = sg.scalar("x")

    @sg.custom_vjp
    def no_rule(x):
        return x

    with pytest.raises(
        sg.UnsupportedError, match=r"no_rule has no rule: give it one with .*defvjp\(fwd, bwd\)"
    ):
        no_rule(x)

    @sg.custom_vjp
    def bad_fwd(x):
        return x

    bad_fwd.defvjp(lambda x: x, lambda r, g: (g,))
    with pytest.raises(sg.UnsupportedError, match=r"fwd must return a pair \(out, residuals\), got Expr"):
        bad_fwd(x)
    with pytest.raises(
        sg.UnsupportedError, match=r"custom_vjp function .*bad_fwd: too many positional arguments"
    ):
        bad_fwd(x, x)
    with pytest.raises(sg.UnsupportedError, match=r"nondiff_argnums must be non-negative ints"):
        sg.custom_jvp(lambda x: x, nondiff_argnums=(-1,))

    g = sg.custom_jvp(lambda k, x: x * len(k), nondiff_argnums=(0,))
    g.defjvp(lambda k, p, t: (p[0], t[0]))
    with pytest.raises(sg.UnsupportedError, match=r"must be hashable static values, got \('list',\)"):
        g([1, 2], x)

    @sg.custom_jvp
    def squares_tangent(x):
        return x

    squares_tangent.defjvp(lambda p, t: (p[0], t[0] * t[0]))
    with pytest.raises(
        sg.UnsupportedError, match="squares_tangent: its jvp rule is not linear in the tangent"
    ):
        sg.grad(squares_tangent(x), x)


# ---------------------------------------------------------------- register_op: a Bessel function in numba


@numba.njit
def bessel_j0(x):
    """J0 from Bessel's integral (1/pi) int_0^pi cos(x sin t) dt (midpoint rule, exact to rounding
    for |x| < 20: the integrand is periodic and analytic)."""
    n = 64
    s = 0.0
    for k in range(n):
        t = math.pi * (k + 0.5) / n
        s += math.cos(x * math.sin(t))
    return s / n


@numba.njit
def bessel_j1(x):
    n = 64
    s = 0.0
    for k in range(n):
        t = math.pi * (k + 0.5) / n
        s += math.cos(t - x * math.sin(t))
    return s / n


def shifted_power(a, b):  # a plain Python function of two operands (numba compiles it)
    return (a + 1.0) ** b


@pytest.fixture(scope="module")
def bessel():
    """J0 (J0' = -J1) and J1 (J1' = J0 - J1/x) registered for this module's tests, removed after
    (the op-table tests of other modules walk every op of the table)."""
    j0 = sg.register_op("bessel_j0", bessel_j0, derivative=lambda x: -sg.bessel_j1(x))
    j1 = sg.register_op("bessel_j1", bessel_j1, derivative=lambda x: sg.bessel_j0(x) - sg.bessel_j1(x) / x)
    sp = sg.register_op(
        "shifted_power",
        shifted_power,
        derivative=(
            lambda a, b: b * (a + 1.0) ** (b - 1.0),
            lambda a, b: sg.shifted_power(a, b) * sg.log(a + 1.0),
        ),
    )
    yield j0, j1, sp
    for name in ("bessel_j0", "bessel_j1", "shifted_power"):
        sg.unregister_op(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_registered_bessel_value_gradient_and_hessian_from_the_builder(bessel, backend):
    j0, j1, _ = bessel
    x = sg.tensor("x", ("n",))
    xv = np.array([0.5, 1.5, 3.0, 7.0, 12.0])
    y = sg.sum(j0(x) * x)
    f = sg.compile([j0(x), y, sg.grad(y, x)], backend=backend)
    vals, value, g = f(xv)
    np.testing.assert_allclose(vals, scipy.special.j0(xv), atol=1e-14)
    np.testing.assert_allclose(g, scipy.special.j0(xv) - xv * scipy.special.j1(xv), atol=1e-13)
    np.testing.assert_allclose(g, central(lambda v: np.sum(scipy.special.j0(v) * v), xv), rtol=1e-6)
    # the Hessian goes through J1's derivative (J0 - J1/x), another registered op
    z = sg.tensor("z", (3,))
    zv = xv[:3]
    H = sg.compile(sg.hessian(sg.sum(sg.bessel_j0(z)), [z])[0][0], backend=backend)(zv)

    def grad_truth(v):
        return -scipy.special.j1(v)

    np.testing.assert_allclose(H, np.diag(central(lambda v: np.sum(grad_truth(v)), zv)), atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_registered_op_from_traced_code_float32_and_two_operands(bessel, backend):
    _, _, sp = bessel

    def loss(w, e):
        return np.sum(sg.bessel_j0(w) ** 2) + np.sum(sp(w * w, e))

    wv, ev = np.array([0.3, 1.7, 4.0]), np.array([1.5, 0.5, 2.0])

    def truth(wv, ev):
        return np.sum(scipy.special.j0(wv) ** 2) + np.sum((wv * wv + 1.0) ** ev)

    value, (gw, ge) = sg.value_and_grad(loss, argnums=(0, 1), backend=backend)(wv, ev)
    np.testing.assert_allclose(value, truth(wv, ev), rtol=1e-13)
    np.testing.assert_allclose(gw, central(lambda v: truth(v, ev), wv), rtol=1e-6)
    np.testing.assert_allclose(ge, central(lambda v: truth(wv, v), ev), rtol=1e-6)
    x32 = sg.tensor("x32", (3,), "float32")
    out = sg.compile(sg.bessel_j0(x32), backend=backend)(wv.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, scipy.special.j0(wv), rtol=1e-6)


def test_registered_op_parses_and_compiles_inline(bessel):
    e = sg.parse("bessel_j0(x) * 2 + shifted_power(x, 2)", shapes={"x": ()})
    f = sg.compile(e, backend="numba")
    np.testing.assert_allclose(f(1.5), 2 * scipy.special.j0(1.5) + 2.5**2)
    assert "_rt.user_bessel_j0_" in f.source


def test_registered_op_saves_with_its_function(bessel, tmp_path):
    z = sg.tensor("z", ("n",))
    y = sg.sum(sg.bessel_j0(z) * z)
    f = sg.compile([y, sg.grad(y, z)], backend="numba")
    path = tmp_path / "bessel_saved.py"
    f.save(path)
    text = path.read_text()
    assert "def _rt_user_bessel_j0_" in text and "def _rt_user_bessel_j1_" in text
    code = (
        "import importlib.util, sys, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert 'symgrad' not in sys.modules\n"
        "v, g = m.call(np.array([0.5, 2.0, 9.0]))\n"
        "print(repr(float(v)), list(map(float, g)))\n"
    )
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    value, grads = run.stdout.split(" ", 1)
    zv = np.array([0.5, 2.0, 9.0])
    np.testing.assert_allclose(float(value), np.sum(scipy.special.j0(zv) * zv), rtol=1e-13)
    np.testing.assert_allclose(eval(grads), scipy.special.j0(zv) - zv * scipy.special.j1(zv), atol=1e-13)


_SCALE = 3.0


def test_save_refuses_a_function_reading_a_global_it_cannot_copy(tmp_path):
    @numba.njit
    def scaled(x):
        return _SCALE * x

    sg.register_op("scaled_by_global", scaled, derivative=lambda x: 3.0 + 0.0 * x)
    try:
        x = sg.scalar("x")
        f = sg.compile(sg.scaled_by_global(x), backend="numba")
        assert f(2.0) == 6.0
        with pytest.raises(
            sg.UnsupportedError, match=r"cannot save: the op 'scaled_by_global' .* reads the global '_SCALE'"
        ):
            f.save(tmp_path / "s.py")
    finally:
        sg.unregister_op("scaled_by_global")


def test_register_op_names_are_validated_and_never_raw_in_source(tmp_path):
    def f(x):
        return x * 2.0

    for bad, message in [
        ("2x", r"register_op: an op name must be an identifier string, got '2x'"),
        ("a-b", r"an op name must be an identifier string, got 'a-b'"),
        ("__x", r"register_op: an op name may not start with '__'"),
        (3, r"an op name must be an identifier string, got 3"),
    ]:
        with pytest.raises(sg.UnsupportedError, match=message):
            sg.register_op(bad, f, derivative=lambda x: 2.0 + 0.0 * x)
    for taken in ("sin", "compile", "sum", "pi"):
        with pytest.raises(sg.UnsupportedError, match=rf"register_op: the name '{taken}' is taken"):
            sg.register_op(taken, f, derivative=lambda x: 2.0 + 0.0 * x)
    # a non-ASCII name (NFKC-normalised as Python reads it): ASCII identifiers in the generated source
    double = sg.register_op("doubleψ", f, derivative=lambda x: 2.0 + 0.0 * x)
    try:
        x = sg.scalar("x")
        c = sg.compile(sg.grad(double(x) ** 2, x), backend="numba")
        assert c(1.5) == pytest.approx(2 * 3.0 * 2.0)
        assert c.source.isascii()
    finally:
        sg.unregister_op("doubleψ")
    assert "doubleψ" not in OPS and "doubleψ" not in parse_module.FUNCTIONS
    with pytest.raises(AttributeError):
        sg.doubleψ


def test_register_op_arity_and_derivative_errors():
    def three(a, b, c):
        return a

    def one(x):
        return x

    with pytest.raises(
        sg.UnsupportedError, match=r"register_op\('three'\): fn must take one or two scalar arguments"
    ):
        sg.register_op("three", three, derivative=lambda a, b, c: a)
    with pytest.raises(
        sg.UnsupportedError, match=r"register_op\('one'\): derivative 0 must take the op's 1 operand"
    ):
        sg.register_op("one", one, derivative=lambda a, b: a)
    with pytest.raises(
        sg.UnsupportedError, match=r"register_op\('one'\): derivative must be a function of the operand"
    ):
        sg.register_op("one", one, derivative=(lambda x: x, lambda x: x))
    with pytest.raises(sg.UnsupportedError, match=r"register_op\('one'\): fn must be a function"):
        sg.register_op("one", 3.0, derivative=lambda x: x)
    with pytest.raises(sg.UnsupportedError, match=r"unregister_op: 'sin' is not an op registered"):
        sg.unregister_op("sin")
    assert "one" not in OPS and "three" not in OPS


def test_registered_op_builder_arity_error(bessel):
    j0, _, _ = bessel
    with pytest.raises(TypeError, match="positional argument"):
        j0(sg.scalar("x"), sg.scalar("y"))

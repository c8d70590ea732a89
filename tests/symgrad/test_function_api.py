"""Transformations of Python functions as JAX has them: grad, value_and_grad, jacfwd/jacrev,
hessian, jvp, vjp, hvp and compile, with argnums, has_aux and pytrees, and their composition.

Every result is checked against an independent truth: central differences of the same numpy
function, closed forms, and JAX itself when it is importable (the "coming from JAX" table: each
row's JAX spelling, with ``jax`` renamed ``sg``, is the symgrad spelling)."""

import collections
import dataclasses
import importlib.util
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad import api, pytree

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def numpy_backend(monkeypatch):
    # the numpy backend compiles in milliseconds; one test below runs the numba backend
    monkeypatch.setattr(api, "DEFAULT_BACKEND", "numpy")


# ---------------------------------------------------------------- independent truth


def central_grad(fun, x, h=1e-6):
    """d fun / d x by central differences (x a float or an array; fun returns a scalar or an
    array, giving shape fun.shape + x.shape)."""
    x = np.asarray(x, dtype=np.float64)
    base = np.asarray(fun(x.copy()))
    out = np.zeros(base.shape + x.shape)
    flat = x.reshape(-1)
    for i in range(flat.size):
        step = np.zeros(flat.size)
        step[i] = h * max(1.0, abs(flat[i]))
        plus = np.asarray(fun((flat + step).reshape(x.shape)))
        minus = np.asarray(fun((flat - step).reshape(x.shape)))
        out.reshape(base.shape + (-1,))[..., i] = (plus - minus) / (2 * step[i])
    return out


def assert_tree_close(got, expected, rtol=1e-6, atol=1e-8):
    """Same pytree structure (dicts, tuples, lists, namedtuples) and close leaves."""
    g_leaves, g_def = pytree.flatten(got)
    e_leaves, e_def = pytree.flatten(expected)
    assert g_def == e_def, (g_def, e_def)
    for a, b in zip(g_leaves, e_leaves):
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- the functions of the table
# written once over a numpy-like module ``xp``: numpy for symgrad (and the truth), jax.numpy for JAX


def make_functions(xp):
    def f(x):  # vector -> scalar
        return xp.sum(xp.sin(x) * x**2)

    def g(x, y):  # two arguments -> scalar
        return xp.sum(xp.tanh(x * y)) + y**3

    def h(x):  # vector -> vector
        return xp.sin(x) * x[0]

    def f_aux(x):  # (loss, aux)
        return xp.sum(x**2), {"norm": xp.sqrt(xp.sum(x**2)), "first": x[0]}

    def loss(params, X):  # a dict of parameters
        return xp.sum(xp.tanh(X @ params["W"] + params["b"]) ** 2)

    return {"f": f, "g": g, "h": h, "f_aux": f_aux, "loss": loss}


F = make_functions(np)
x0 = np.array([0.3, -0.7, 1.1])
y0 = 0.4
v0 = np.array([1.0, 2.0, -1.0])
X0 = RNG.normal(size=(4, 3))
P0 = {"W": np.array([0.2, -0.1, 0.4]), "b": 0.3}
DATA = {"x": x0, "y": y0, "v": v0, "X": X0, "params": P0}


def _grad_params(params):
    gW = central_grad(lambda W: F["loss"]({"W": W, "b": params["b"]}, X0), params["W"])
    gb = float(central_grad(lambda b: F["loss"]({"W": params["W"], "b": float(b)}, X0), params["b"]))
    return {"W": gW, "b": gb}


def _f_hessian_diagonal(x):
    return -(x**2) * np.sin(x) + 4 * x * np.cos(x) + 2 * np.sin(x)  # d2/dx2 sin(x) x^2


def _truth_hessian_params():
    flat = np.concatenate([P0["W"], [P0["b"]]])

    def grad_flat(z):
        g = _grad_params({"W": z[:3], "b": float(z[3])})
        return np.concatenate([g["W"], [g["b"]]])

    H = central_grad(grad_flat, flat, h=1e-4)
    return {
        "W": {"W": H[:3, :3], "b": H[:3, 3]},
        "b": {"W": H[3, :3], "b": H[3, 3]},
    }


def _truth(row):
    f, g, h = F["f"], F["g"], F["h"]
    gx = central_grad(f, x0)
    aux = {"norm": np.sqrt(np.sum(x0**2)), "first": x0[0]}
    return {
        "jax.grad(f)(x)": lambda: gx,
        "jax.grad(g, argnums=1)(x, y)": lambda: central_grad(lambda y: g(x0, y), y0),
        "jax.grad(g, argnums=(0, 1))(x, y)": lambda: (
            central_grad(lambda x: g(x, y0), x0),
            central_grad(lambda y: g(x0, y), y0),
        ),
        "jax.value_and_grad(f)(x)": lambda: (f(x0), gx),
        "jax.value_and_grad(g, (0, 1))(x, y)": lambda: (
            g(x0, y0),
            (central_grad(lambda x: g(x, y0), x0), central_grad(lambda y: g(x0, y), y0)),
        ),
        "jax.grad(f_aux, has_aux=True)(x)": lambda: (2 * x0, aux),
        "jax.value_and_grad(f_aux, has_aux=True)(x)": lambda: ((np.sum(x0**2), aux), 2 * x0),
        "jax.grad(loss)(params, X)": lambda: _grad_params(P0),
        "jax.value_and_grad(loss)(params, X)": lambda: (F["loss"](P0, X0), _grad_params(P0)),
        "jax.jacfwd(h)(x)": lambda: central_grad(h, x0),
        "jax.jacrev(h)(x)": lambda: central_grad(h, x0),
        "jax.jacfwd(g, argnums=(0, 1))(x, y)": lambda: (
            central_grad(lambda x: g(x, y0), x0),
            central_grad(lambda y: g(x0, y), y0),
        ),
        "jax.hessian(f)(x)": lambda: np.diag(_f_hessian_diagonal(x0)),
        "jax.hessian(loss)(params, X)": _truth_hessian_params,
        "jax.jvp(h, (x,), (v,))": lambda: (h(x0), central_grad(h, x0) @ v0),
        "jax.vjp(h, x)[1](v)": lambda: (v0 @ central_grad(h, x0),),
        "jax.grad(jax.grad(lambda y: g(x, y)))(y)": lambda: float(
            central_grad(lambda y: central_grad(lambda t: g(x0, t), y, h=1e-4), y0, h=1e-4)
        ),
        "jax.jacfwd(jax.grad(f))(x)": lambda: np.diag(_f_hessian_diagonal(x0)),
        "jax.jvp(jax.grad(f), (x,), (v,))[1]": lambda: _f_hessian_diagonal(x0) * v0,
        "jax.jit(h)(x)": lambda: h(x0),
    }[row]


# (JAX spelling, what it computes); the symgrad spelling is the same text with jax -> sg
JAX_TABLE = [
    ("jax.grad(f)(x)", "gradient of a scalar function of one argument"),
    ("jax.grad(g, argnums=1)(x, y)", "gradient with respect to another argument"),
    ("jax.grad(g, argnums=(0, 1))(x, y)", "a tuple of gradients"),
    ("jax.value_and_grad(f)(x)", "value and gradient in one call"),
    ("jax.value_and_grad(g, (0, 1))(x, y)", "argnums as the second positional argument"),
    ("jax.grad(f_aux, has_aux=True)(x)", "(gradient, aux) of a function returning (loss, aux)"),
    ("jax.value_and_grad(f_aux, has_aux=True)(x)", "((value, aux), gradient)"),
    ("jax.grad(loss)(params, X)", "a dict of parameters: the gradient is a dict"),
    ("jax.value_and_grad(loss)(params, X)", "value and gradient dict"),
    ("jax.jacfwd(h)(x)", "Jacobian, forward mode"),
    ("jax.jacrev(h)(x)", "Jacobian, reverse mode"),
    ("jax.jacfwd(g, argnums=(0, 1))(x, y)", "Jacobian blocks per argument"),
    ("jax.hessian(f)(x)", "Hessian"),
    ("jax.hessian(loss)(params, X)", "Hessian of a dict of parameters: a dict of dicts"),
    ("jax.jvp(h, (x,), (v,))", "(output, Jacobian-vector product)"),
    ("jax.vjp(h, x)[1](v)", "vector-Jacobian product (a tuple, one per primal)"),
    ("jax.grad(jax.grad(lambda y: g(x, y)))(y)", "second derivative by composition"),
    ("jax.jacfwd(jax.grad(f))(x)", "Hessian as the Jacobian of the gradient"),
    ("jax.jvp(jax.grad(f), (x,), (v,))[1]", "Hessian-vector product (also sg.hvp(f, (x,), (v,)))"),
    ("jax.jit(h)(x)", "compile (sg.compile)"),
]


def _sg_spelling(jax_text):
    return jax_text.replace("jax.jit", "sg.compile").replace("jax.", "sg.")


@pytest.mark.parametrize("row", [r[0] for r in JAX_TABLE])
def test_coming_from_jax_row_renamed_to_sg_matches_central_differences(row):
    namespace = {"sg": sg, **F, **DATA}
    got = eval(_sg_spelling(row), namespace)  # noqa: S307  (the table's own text)
    assert_tree_close(got, _truth(row)(), rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
@pytest.mark.parametrize("row", [r[0] for r in JAX_TABLE])
def test_coming_from_jax_row_gives_what_jax_gives(row):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    theirs = eval(row, {"jax": jax, **make_functions(jnp), **DATA})  # noqa: S307
    ours = eval(_sg_spelling(row), {"sg": sg, **F, **DATA})  # noqa: S307
    assert_tree_close(ours, jax.tree_util.tree_map(np.asarray, theirs), rtol=1e-10, atol=1e-12)


def test_the_table_spells_every_transformation_the_issue_names():
    text = " ".join(r[0] for r in JAX_TABLE)
    for name in ("grad(", "value_and_grad(", "jacfwd(", "jacrev(", "hessian(", "jvp(", "vjp(", "jit("):
        assert "jax." + name in text
    assert "argnums" in text and "has_aux=True" in text and "params" in text


def test_hvp_is_jvp_of_grad_for_the_first_argument():
    got = sg.hvp(F["f"], (x0,), (v0,))
    np.testing.assert_allclose(got, _f_hessian_diagonal(x0) * v0, rtol=1e-12)


# ---------------------------------------------------------------- pytrees


Params = collections.namedtuple("Params", "W b")


@dataclasses.dataclass
class Layer:
    W: np.ndarray
    b: float


def _affine_loss(p, X):
    return np.sum((X @ p.W + p.b) ** 2)


@pytest.mark.parametrize("make", [Params, Layer], ids=["namedtuple", "dataclass"])
def test_namedtuple_and_dataclass_parameters_get_gradients_of_their_own_type(make):
    W, b = np.array([0.5, -1.0, 2.0]), 0.25
    value, grads = sg.value_and_grad(_affine_loss)(make(W, b), X0)
    r = X0 @ W + b
    assert value == pytest.approx(np.sum(r**2), rel=1e-14)
    assert type(grads) is make
    np.testing.assert_allclose(grads.W, 2 * X0.T @ r, rtol=1e-12)
    assert grads.b == pytest.approx(2 * np.sum(r), rel=1e-12)


def test_nested_lists_of_dicts_keep_their_structure_and_dict_keys_are_sorted():
    def loss(layers, x):
        for layer in layers:
            x = np.tanh(layer["W"] @ x + layer["b"])
        return np.sum(x**2)

    layers = [
        {"b": np.zeros(2), "W": RNG.normal(size=(2, 3))},
        {"W": RNG.normal(size=(1, 2)), "b": np.ones(1)},
    ]
    x = RNG.normal(size=3)
    vg = sg.value_and_grad(loss)
    _, grads = vg(layers, x)
    assert isinstance(grads, list) and [list(g) for g in grads] == [["W", "b"], ["W", "b"]]
    for k in range(2):
        for name in ("W", "b"):

            def as_function(value, k=k, name=name):
                changed = [dict(layer) for layer in layers]
                changed[k][name] = value
                return loss(changed, x)

            np.testing.assert_allclose(
                grads[k][name], central_grad(as_function, layers[k][name]), rtol=1e-6, atol=1e-9
            )
    # the leaves are the inputs, named after their paths, in JAX's order (sorted keys)
    assert [s.name for s in vg.inputs] == ["layers_0_W", "layers_0_b", "layers_1_W", "layers_1_b", "x"]


def test_a_tuple_parameter_is_a_pytree_not_a_numpy_value_error():
    def loss(params, X):
        W, b = params
        return np.sum(X @ W + b)

    value, (gW, gb) = sg.value_and_grad(loss)((np.ones(3), 0.5), X0)
    assert value == pytest.approx(np.sum(X0 @ np.ones(3) + 0.5), rel=1e-14)
    np.testing.assert_allclose(gW, X0.sum(axis=0), rtol=1e-14)
    assert gb == 4.0


def test_one_compile_serves_every_batch_size_for_a_dict_of_parameters():
    grad = sg.grad(F["loss"])
    for n in (5, 17, 40):
        X = RNG.normal(size=(n, 3))
        got = grad(P0, X)
        expected = {
            "W": central_grad(lambda W: F["loss"]({"W": W, "b": 0.3}, X), P0["W"]),
            "b": float(central_grad(lambda b: F["loss"]({"W": P0["W"], "b": float(b)}, X), 0.3)),
        }
        assert_tree_close(got, expected)
    assert grad.compile_count == 1 and grad.trace_count == 1


def test_compile_returns_any_nested_structure_of_expressions():
    x, y = sg.scalars("x y")
    H = sg.compile(sg.hessian(x**2 * y**3, [x, y]))(1.5, 2.0)
    # d2/dx2 = 2 y^3, d2/dxdy = 6 x y^2, d2/dy2 = 6 x^2 y
    assert H == ((16.0, 36.0), (36.0, 27.0))
    out = sg.compile({"s": x + y, "pair": [x * y, Params(x, y)], "none": None})(1.5, 2.0)
    assert out == {"none": None, "pair": (3.0, Params(1.5, 2.0)), "s": 3.5}
    assert type(out["pair"][1]) is Params
    # one expression and a flat list compile as before: a value, a tuple
    assert sg.compile(x * y)(2.0, 3.0) == 6.0
    assert sg.compile([x * y, x + y])(2.0, 3.0) == (6.0, 5.0)


def test_a_traced_function_returning_a_dataclass_returns_it():
    got = sg.compile(lambda W, b: Layer(W * 2, np.sum(W) + b))(np.arange(3.0), 1.0)
    assert type(got) is Layer
    np.testing.assert_array_equal(got.W, [0.0, 2.0, 4.0])
    assert got.b == 4.0


# ---------------------------------------------------------------- composition and symbolic use


def test_grad_of_grad_and_jacobian_of_grad_match_closed_forms():
    f = F["f"]
    second = sg.grad(sg.grad(lambda t: np.sin(t) * t**2))
    for t in (0.3, -1.2):
        assert second(t) == pytest.approx(_f_hessian_diagonal(np.array(t)), rel=1e-12)
    np.testing.assert_allclose(sg.jacobian(sg.grad(f))(x0), np.diag(_f_hessian_diagonal(x0)), rtol=1e-12)
    np.testing.assert_allclose(sg.hessian(f)(x0), sg.jacrev(sg.grad(f))(x0), rtol=1e-12)


def test_a_transformed_function_called_on_symbols_returns_expressions():
    x = sg.tensor("x", (3,))
    dfdx = sg.grad(F["f"])(x)
    assert isinstance(dfdx, sg.Expr) and dfdx.shape == (3,)
    np.testing.assert_allclose(sg.compile(dfdx)(x0), central_grad(F["f"], x0), rtol=1e-7)
    # an argument that is an expression, not a symbol: differentiated at that expression
    d = sg.grad(lambda t: t**3)(2 * sg.scalar("s"))
    assert sg.compile(d)(1.5) == pytest.approx(3 * 3.0**2)
    # an argument shared with another one is held apart, as JAX does
    s = sg.scalar("s")
    d = sg.grad(lambda a, b: a * b)(s, s)
    assert sg.compile(d)(2.0) == 2.0


def test_expression_forms_still_work_and_function_options_are_refused_with_them():
    x, y = sg.scalars("x y")
    e = x * y + sg.sin(x)
    gx, gy = sg.grad(e, [x, y])
    assert sg.compile([gx, gy])(0.7, -1.3) == pytest.approx((-1.3 + np.cos(0.7), 0.7))
    assert sg.jacfwd(sg.stack([e, x]), [x])[0].shape == (2,)
    with pytest.raises(sg.UnsupportedError, match="grad: argnums and has_aux are for Python functions"):
        sg.grad(e, [x], argnums=0)
    with pytest.raises(sg.UnsupportedError, match=r"grad\(expr\): say which symbols"):
        sg.grad(e)
    with pytest.raises(sg.UnsupportedError, match=r"hessian\(expr\): say which symbols"):
        sg.hessian(e)
    with pytest.raises(sg.UnsupportedError, match=r"vjp\(expr, wrt, cotangent\) takes"):
        sg.vjp(e, [x])


# ---------------------------------------------------------------- a traced function is a full citizen


def test_traced_function_has_source_kernel_repr_compiles_and_check_grad():
    vg = sg.value_and_grad(F["loss"], backend="numba")
    with pytest.raises(sg.UnsupportedError, match="has not been traced yet: call it once"):
        vg.source
    value, grads = vg(P0, X0)
    assert "def kernel" in vg.source and callable(vg.kernel)
    assert [s.name for s in vg.inputs] == ["params_W", "params_b", "X"]
    text = repr(vg)
    assert "value_and_grad(loss, argnums=0)" in text and "params_W: (params_W_0,) float64" in text
    assert vg.compiles and vg.compiles[0]["cause"] == "build"
    assert sg.check_grad(vg, P0, X0) < 1e-7
    # the kernel takes the leaves, as .inputs lists them, and gives the flat outputs
    out = vg.kernel(P0["W"], P0["b"], X0)
    assert out[0] == pytest.approx(value, rel=1e-14)


def test_a_traced_function_saves_a_module_that_runs_without_symgrad(tmp_path):
    vg = sg.value_and_grad(F["loss"], backend="numba")
    value, grads = vg(P0, X0)
    path = vg.save(tmp_path / "loss_grad.py")
    sys.path.insert(0, str(tmp_path))
    try:
        spec = importlib.util.spec_from_file_location("loss_grad", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tmp_path))
    saved_value, saved_grads = module.call(P0["W"], P0["b"], X0)
    assert saved_value == pytest.approx(value, rel=1e-14)
    assert_tree_close(saved_grads, grads, rtol=1e-14)


def test_scipy_of_a_traced_function_packs_and_unpacks_the_parameters_structure():
    from scipy.optimize import minimize

    def least_squares(params, X, t):
        return np.sum((X @ params["W"] + params["b"] - t) ** 2)

    X = RNG.normal(size=(30, 3))
    t = X @ np.array([1.0, -2.0, 0.5]) + 0.7 + 0.01 * RNG.normal(size=30)
    p = sg.value_and_grad(least_squares).scipy({"W": np.zeros(3), "b": 0.0}, X, t)
    res = minimize(p.fun, p.x0, jac=True, hess=p.hess, method="trust-exact")
    found = p.unpack(res.x)
    A = np.column_stack([X, np.ones(30)])
    solution = np.linalg.lstsq(A, t, rcond=None)[0]
    assert sorted(found) == ["W", "b"]
    np.testing.assert_allclose(found["W"], solution[:3], rtol=1e-7)
    assert found["b"] == pytest.approx(solution[3], rel=1e-7)
    np.testing.assert_allclose(p.pack(found), res.x)
    # the Hessian (symbolic sizes, fixed by the data) is 2 A^T A
    np.testing.assert_allclose(p.hess(res.x), 2 * A.T @ A, rtol=1e-12)
    with pytest.raises(sg.InputError, match=r"pack\(\): expected the structure"):
        p.pack({"W": np.zeros(3)})


def test_call_overhead_path_falls_back_for_other_signatures():
    # the generated dispatcher serves the last signature; other calls trace as before
    vg = sg.value_and_grad(lambda x: np.sum(x**2))
    assert vg(np.ones(3))[0] == 3.0 and vg(np.ones(3))[0] == 3.0
    _, g = vg(np.ones(3, dtype=np.float32))
    assert g.dtype == np.float32 and vg.compile_count == 2
    _, g = vg(np.ones((2, 2)))
    np.testing.assert_array_equal(g, np.full((2, 2), 2.0))
    assert vg(x=np.ones(2))[0] == 2.0  # keywords
    assert vg(2.0)[0] == 4.0 and vg(np.float64(2.0))[0] == 4.0
    assert vg.compile_count == 4
    vg(np.ones(3))
    assert vg(np.array(3.0))[0] == 9.0  # a lower rank than the dispatcher's: traced as a scalar
    assert vg.compile_count == 4


# ---------------------------------------------------------------- errors


def test_errors_name_what_was_wrong():
    with pytest.raises(sg.ShapeError, match=r"returned a value of shape \(\w+,\); grad needs a scalar"):
        sg.grad(np.sin)(x0)
    with pytest.raises(sg.UnsupportedError, match=r"has_aux=True, so it must return a pair \(output, aux\)"):
        sg.grad(F["f"], has_aux=True)(x0)
    with pytest.raises(sg.UnsupportedError, match=r"returned a tuple; grad needs .* has_aux=True"):
        sg.grad(F["f_aux"])(x0)
    with pytest.raises(sg.UnsupportedError, match="'y' is parameter 1"):
        sg.grad(F["g"], argnums="y")
    with pytest.raises(sg.UnsupportedError, match="argnums 2 is out of range for g, which takes 2"):
        sg.jacobian(F["g"], argnums=2)
    with pytest.raises(sg.UnsupportedError, match="the second positional argument is argnums; got both"):
        sg.hessian(F["f"], 0, argnums=0)
    with pytest.raises(sg.UnsupportedError, match="argnums 0 repeats an argument|repeats an argument"):
        sg.grad(F["g"], argnums=(0, 0))
    with pytest.raises(sg.UnsupportedError, match="argument 'p_name' of <lambda> is differentiated"):
        sg.grad(lambda p: np.sum(p["x"]))({"x": np.ones(2), "name": "a"})
    with pytest.raises(sg.UnsupportedError, match="compile: a traced function's parameters are its inputs"):
        sg.compile(F["f"], inputs=[sg.scalar("x")])
    with pytest.raises(
        sg.UnsupportedError, match="returned a str .* compile compiles arrays and numbers only"
    ):
        sg.compile(lambda x: (x, "label"))(1.0)
    with pytest.raises(sg.UnsupportedError, match="compile: no outputs given"):
        sg.compile([])
    with pytest.raises(sg.ShapeError, match="hessian needs a scalar"):
        sg.hessian(F["h"])(x0)
    with pytest.raises(sg.UnsupportedError, match="scipy.. takes a function made by sg.value_and_grad"):
        sg.grad(F["f"]).scipy(x0)
    with pytest.raises(sg.UnsupportedError, match="check_grad takes a function made by sg.value_and_grad"):
        sg.check_grad(sg.value_and_grad(F["f_aux"], has_aux=True), x0)


def test_jvp_and_vjp_errors_name_the_mismatch():
    with pytest.raises(sg.UnsupportedError, match="jvp: primals must be a tuple or list"):
        sg.jvp(F["h"], x0, v0)
    with pytest.raises(sg.UnsupportedError, match="jvp: 1 primals but 2 tangents"):
        sg.jvp(F["h"], (x0,), (v0, v0))
    with pytest.raises(sg.ShapeError, match=r"jvp: a tangent of shape \(2,\) for a primal of shape \(3,\)"):
        sg.jvp(F["h"], (x0,), (np.ones(2),))
    with pytest.raises(sg.UnsupportedError, match="jvp: the tangents have structure"):
        sg.jvp(F["loss"], (P0, X0), ({"W": v0}, X0))
    _, pullback = sg.vjp(F["h"], x0)
    with pytest.raises(
        sg.ShapeError, match=r"vjp: a cotangent of shape \(2,\) for an output of shape \(3,\)"
    ):
        pullback(np.ones(2))


def test_has_aux_in_vjp_returns_the_aux_too():
    out, pullback, aux = sg.vjp(F["f_aux"], x0, has_aux=True)
    assert out == pytest.approx(np.sum(x0**2))
    assert aux["first"] == x0[0]
    (g,) = pullback(1.0)
    np.testing.assert_allclose(g, 2 * x0, rtol=1e-14)


# ---------------------------------------------------------------- symbols follow SymPy


def test_symbols_gives_one_symbol_for_one_name_as_sympy():
    import sympy

    r = sg.symbols("r")
    assert isinstance(r, sg.Expr) and isinstance(sympy.symbols("r"), sympy.Symbol)
    assert sg.compile(r**2)(3.0) == 9.0
    assert sg.symbols("r s") == sg.scalars("r s") and len(sg.symbols("r, s")) == 2
    assert sg.symbols("r,") == (r,) and isinstance(sympy.symbols("r,"), tuple)
    assert sg.symbols(["r"]) == (r,)


def test_the_structure_of_a_pytree_argument_is_part_of_the_trace_signature():
    # the function can tell a tuple from a list and None from a value: each traces on its own
    f = sg.compile(lambda p: p[1] * (2 if isinstance(p, tuple) else 3))
    assert f((1.0, np.ones(2)))[0] == 2.0 and f([1.0, np.ones(2)])[0] == 3.0
    assert f((1.0, np.ones(2)))[0] == 2.0
    g = sg.compile(lambda x, scale=None: x if scale is None else x * scale)
    assert g(2.0) == 2.0 and g(2.0, 3.0) == 6.0 and g(2.0, None) == 2.0
    assert f.compile_count == 2 and g.compile_count == 2


def test_scipy_hess_works_when_the_data_fixes_symbolic_sizes():
    w, X = sg.tensor("w", ("d",)), sg.tensor("X", ("n", "d"))
    vg = sg.value_and_grad(sg.sum(sg.exp(X @ w)) + sg.sum(w**4), wrt=w, inputs=[w, X])
    Xd, x = RNG.normal(size=(5, 3)), RNG.normal(size=3)
    H = vg.scipy(X=Xd).hess(x)
    # d2/dw2: X^T diag(exp(X w)) X + diag(12 w^2)
    np.testing.assert_allclose(H, (Xd.T * np.exp(Xd @ x)) @ Xd + np.diag(12 * x**2), rtol=1e-12)
    assert np.array_equal(H, H.T)

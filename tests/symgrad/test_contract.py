"""Contractions and matrix structure (symgrad/ops/contract.py): einsum, tensordot, inner, dot,
matmul with any batch dims, kron, cross, trace, diag, diagonal, tril, triu.

Values against numpy, gradients (VJP) and tangents (JVP) against central differences of the
numpy function, a Hessian against its closed form, JAX when it is importable, and the errors'
types and messages."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.graph import topo_order

RNG = np.random.default_rng(20)

# (subscripts, operand shapes)
EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ii->", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ii->i", [(4, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("i,i->", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
    ("...ij,...jk", [(2, 1, 3, 4), (3, 4, 5)]),
    ("ijk,jil->kl", [(3, 4, 5), (4, 3, 2)]),
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),
    ("ij,kj,k->i", [(3, 4), (5, 4), (5,)]),
    ("iij->ji", [(3, 3, 2)]),
    ("ijij->", [(2, 3, 2, 3)]),
    ("ij,ij->ij", [(1, 3), (2, 3)]),
    ("i,i", [(3,), (1,)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhqk,bhkd->bqhd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("a,b,c->abc", [(2,), (3,), (4,)]),
    ("i,ij,j->", [(3,), (3, 4), (4,)]),
    ("ij,ij,ij->", [(2, 3), (2, 3), (2, 3)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("i...->...", [(3, 2, 4)]),
    ("ij,j", [(3, 4), (4,)]),
    (",ij->ij", [(), (2, 3)]),
    ("ij,jk->ikj", [(3, 4), (4, 5)]),
    ("i j , j k -> k i", [(3, 4), (4, 5)]),
    ("Ab,bC->CA", [(3, 4), (4, 5)]),
]


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def _numeric_grad(f, arrays, h=1e-5):
    """Central differences of the scalar numpy function f(*arrays), one element at a time."""
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [x.copy() for x in arrays]
            minus = [x.copy() for x in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (f(*plus) - f(*minus)) / (2 * h)
        grads.append(g)
    return grads


def _weights(shape, seed=7):
    return np.random.default_rng(seed).standard_normal(shape)


def _traced_loss(fn, out_shape):
    """A scalar loss of fn's result that weighs every element differently (and not linearly)."""
    w = _weights(out_shape)
    return lambda *xs: np.sum(w * np.sin(fn(*xs)))


def _check_value_and_grad(fn, arrays, backend, rtol=1e-6, atol=1e-8):
    want = fn(*arrays)
    loss = _traced_loss(fn, np.shape(want))
    vg = sg.value_and_grad(loss, argnums=tuple(range(len(arrays))), backend=backend)
    value, grads = vg(*arrays)
    np.testing.assert_allclose(value, loss(*arrays), rtol=1e-10, atol=1e-12)
    for got, expected in zip(grads, _numeric_grad(loss, arrays)):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- einsum values


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("subscripts, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_value_matches_numpy(subscripts, shapes, backend):
    arrays = _arrays(shapes)
    symbols = [sg.tensor(f"x{i}", shape) for i, shape in enumerate(shapes)]
    f = sg.compile(sg.einsum(subscripts, *symbols), inputs=symbols, backend=backend)
    np.testing.assert_allclose(f(*arrays), np.einsum(subscripts, *arrays), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("subscripts, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_traced_np_einsum_gradient_matches_central_differences_numpy(subscripts, shapes):
    arrays = _arrays(shapes, seed=1)
    _check_value_and_grad(lambda *xs: np.einsum(subscripts, *xs), arrays, "numpy")


NUMBA_GRAD_CASES = ["ij,jk->ik", "ii->i", "bhqd,bhkd->bhqk", "ij,kj,k->i", "...ij,...jk", "ijij->"]


@pytest.mark.parametrize("subscripts", NUMBA_GRAD_CASES)
def test_traced_np_einsum_gradient_matches_central_differences_numba(subscripts):
    shapes = dict(EINSUM_CASES)[subscripts]
    arrays = _arrays(shapes, seed=2)
    _check_value_and_grad(lambda *xs: np.einsum(subscripts, *xs), arrays, "numba")


def test_einsum_interleaved_sublists_and_optimize_flag_trace():
    a, b = _arrays([(3, 4), (4, 5)])
    vg = sg.value_and_grad(
        lambda a, b: np.sum(np.einsum(a, [0, 1], b, [1, Ellipsis], [Ellipsis, 0], optimize=True)),
        argnums=(0, 1),
        backend="numpy",
    )
    value, (ga, gb) = vg(a, b)
    np.testing.assert_allclose(value, np.sum(np.einsum(a, [0, 1], b, [1, Ellipsis], [Ellipsis, 0])))
    np.testing.assert_allclose(ga, np.ones((3, 5)) @ b.T)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_einsum_jvp_matches_central_differences(backend):
    a, b, c = _arrays([(3, 4), (4, 5), (5,)], seed=3)
    ta, tb, tc = _arrays([(3, 4), (4, 5), (5,)], seed=4)
    A, B, C = sg.tensor("A", (3, 4)), sg.tensor("B", (4, 5)), sg.tensor("C", (5,))
    out = sg.einsum("ij,jk,k->ik", A, B, C)
    tangent = sg.jvp(out, [A, B, C], [ta, tb, tc])
    got = sg.compile(tangent, inputs=[A, B, C], backend=backend)(a, b, c)
    h = 1e-6
    f = lambda s: np.einsum("ij,jk,k->ik", a + s * ta, b + s * tb, c + s * tc)  # noqa: E731
    np.testing.assert_allclose(got, (f(h) - f(-h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_hessian_through_einsum_is_the_quadratic_forms_matrix():
    # f(x) = x^T M x + sum_i (x_i y_i)^2 : H = M + M^T + 2 diag(y^2)
    M = RNG.standard_normal((4, 4))
    y = RNG.standard_normal(4)
    x = sg.tensor("x", (4,))
    f = sg.einsum("i,ij,j->", x, M, x) + sg.sum(sg.einsum("i,i->i", x, y) ** 2)
    H = sg.compile(sg.hessian(f, x), inputs=[x], backend="numba")(RNG.standard_normal(4))
    np.testing.assert_allclose(H, M + M.T + 2 * np.diag(y**2), rtol=1e-12, atol=1e-12)


def test_hessian_through_einsum_of_a_matrix_matches_differences_of_its_gradient():
    a0 = RNG.standard_normal((2, 3))
    A = sg.tensor("A", (2, 3))
    f = sg.sum(sg.tanh(sg.einsum("ij,kj->ik", A, A)))
    H = sg.compile(sg.hessian(f, A), inputs=[A], backend="numpy")(a0)
    g = sg.compile(sg.grad(f, A), inputs=[A], backend="numpy")
    h = 1e-5
    for idx in np.ndindex(a0.shape):
        e = np.zeros_like(a0)
        e[idx] = h
        np.testing.assert_allclose(H[(...,) + idx], (g(a0 + e) - g(a0 - e)) / (2 * h), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- how einsum lowers


def _ops(expr):
    return [node for node in topo_order([expr])]


def test_einsum_contraction_is_a_matmul_with_no_broadcast_product():
    A, B = sg.tensor("A", ("n", "k")), sg.tensor("B", ("k", "m"))
    nodes = _ops(sg.einsum("ik,kj->ij", A, B))
    assert [n.op for n in nodes].count("matmul") == 1
    assert all(n.ndim <= 2 for n in nodes)  # no (n, k, m) intermediate


def test_einsum_chooses_the_cheap_order_matrix_vector_first():
    # (A @ B) @ v costs n^3; A @ (B @ v) costs n^2: no (n, n) product may be formed
    A, B, v = sg.tensor("A", (50, 50)), sg.tensor("B", (50, 50)), sg.tensor("v", (50,))
    products = [n for n in _ops(sg.einsum("ij,jk,k->i", A, B, v)) if n.op == "matmul"]
    assert len(products) == 2 and all(n.ndim == 1 for n in products)


def test_einsum_with_named_sizes_serves_every_size():
    X = sg.tensor("X", ("b", "n", "d"))
    W = sg.tensor("W", ("d", "d"))
    f = sg.compile(sg.einsum("bnd,de,bne->b", X, W, X), inputs=[X, W], backend="numba")
    for b, n, d in [(2, 3, 4), (1, 5, 2)]:
        x, w = _arrays([(b, n, d), (d, d)])
        np.testing.assert_allclose(f(x, w), np.einsum("bnd,de,bne->b", x, w, x), rtol=1e-12)


def test_trace_and_diagonal_of_named_square_sizes():
    X = sg.tensor("X", ("n", "n"))
    f = sg.compile([sg.trace(X), sg.diagonal(X, 1), sg.einsum("ii->i", X)], inputs=[X], backend="numba")
    for n in (1, 4):
        x = RNG.standard_normal((n, n))
        t, d1, d0 = f(x)
        np.testing.assert_allclose(t, np.trace(x))
        np.testing.assert_allclose(d1, np.diagonal(x, 1))
        np.testing.assert_allclose(d0, np.diagonal(x))


# ---------------------------------------------------------------- the other functions

FUNCTION_CASES = [
    ("tensordot_2", lambda a, b: np.tensordot(a, b), [(2, 3, 4), (3, 4, 5)]),
    ("tensordot_pairs", lambda a, b: np.tensordot(a, b, axes=([0, 2], [2, 0])), [(2, 3, 4), (4, 5, 2)]),
    ("tensordot_0", lambda a, b: np.tensordot(a, b, axes=0), [(2, 3), (4,)]),
    ("tensordot_int_axes", lambda a, b: np.tensordot(a, b, axes=(1, 0)), [(2, 3), (3, 4)]),
    ("inner_nd", lambda a, b: np.inner(a, b), [(2, 3, 4), (5, 4)]),
    ("inner_vec", lambda a, b: np.inner(a, b), [(4,), (4,)]),
    ("dot_nd", lambda a, b: np.dot(a, b), [(2, 3, 4), (5, 4, 6)]),
    ("dot_nd_vec", lambda a, b: np.dot(a, b), [(2, 3, 4), (4,)]),
    ("dot_method", lambda a, b: a.dot(b), [(2, 3), (3, 4)]),
    ("outer", lambda a, b: np.outer(a, b), [(3,), (2, 2)]),
    ("matmul_4d", lambda a, b: a @ b, [(2, 3, 4, 5), (2, 3, 5, 6)]),
    ("matmul_4d_broadcast", lambda a, b: np.matmul(a, b), [(2, 1, 4, 5), (3, 5, 6)]),
    ("matmul_4d_by_matrix", lambda a, b: a @ b, [(2, 3, 4, 5), (5, 6)]),
    ("matmul_matrix_by_4d", lambda a, b: a @ b, [(4, 5), (2, 3, 5, 6)]),
    ("matmul_5d_vec", lambda a, b: a @ b, [(2, 1, 2, 3, 4), (4,)]),
    ("matmul_vec_4d", lambda a, b: a @ b, [(4,), (2, 3, 4, 5)]),
    ("matmul_unit_batch", lambda a, b: a @ b, [(1, 1, 3, 4), (2, 2, 4, 5)]),
    ("kron_2d", lambda a, b: np.kron(a, b), [(2, 3), (4, 2)]),
    ("kron_1d", lambda a, b: np.kron(a, b), [(3,), (2,)]),
    ("kron_mixed_rank", lambda a, b: np.kron(a, b), [(3,), (2, 2)]),
    ("cross", lambda a, b: np.cross(a, b), [(4, 3), (4, 3)]),
    ("cross_broadcast", lambda a, b: np.cross(a, b), [(2, 4, 3), (3,)]),
    ("cross_axis", lambda a, b: np.cross(a, b, axis=0), [(3, 4), (3, 4)]),
    ("cross_axes", lambda a, b: np.cross(a, b, axisa=0, axisb=1, axisc=0), [(3, 4), (4, 3)]),
]

UNARY_CASES = [
    ("trace", lambda x: np.trace(x), (4, 4)),
    ("trace_rect", lambda x: np.trace(x), (3, 5)),
    ("trace_offset", lambda x: np.trace(x, offset=1), (4, 5)),
    ("trace_negative_offset_axes", lambda x: np.trace(x, -1, axis1=1, axis2=2), (2, 4, 3)),
    ("trace_method", lambda x: x.trace(), (3, 3)),
    ("diagonal", lambda x: np.diagonal(x), (3, 4)),
    ("diagonal_offset_axes", lambda x: np.diagonal(x, 1, 2, 0), (4, 2, 3)),
    ("diagonal_past_the_end", lambda x: np.diagonal(x, 5), (3, 4)),
    ("diagonal_method", lambda x: x.diagonal(-1), (4, 3)),
    ("diag_of_matrix", lambda x: np.diag(x, -1), (4, 4)),
    ("diag_of_vector", lambda x: np.diag(x), (4,)),
    ("diag_of_vector_k", lambda x: np.diag(x, 2), (3,)),
    ("diag_of_vector_negative_k", lambda x: np.diag(x, -1), (3,)),
    ("tril", lambda x: np.tril(x), (4, 4)),
    ("tril_k", lambda x: np.tril(x, -1), (3, 5)),
    ("triu", lambda x: np.triu(x), (4, 3)),
    ("triu_batched_k", lambda x: np.triu(x, 1), (2, 3, 4)),
]


@pytest.mark.parametrize("name, fn, shapes", FUNCTION_CASES, ids=[c[0] for c in FUNCTION_CASES])
def test_traced_binary_function_gradient_matches_central_differences(name, fn, shapes):
    _check_value_and_grad(fn, _arrays(shapes, seed=5), "numpy")


@pytest.mark.parametrize("name, fn, shape", UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
def test_traced_structure_function_gradient_matches_central_differences(name, fn, shape):
    _check_value_and_grad(fn, _arrays([shape], seed=6), "numpy")


NUMBA_FUNCTIONS = [
    "tensordot_pairs",
    "dot_nd",
    "matmul_4d_broadcast",
    "matmul_vec_4d",
    "kron_2d",
    "cross_axes",
]
NUMBA_UNARY = ["trace_negative_offset_axes", "diag_of_vector_k", "triu_batched_k", "diagonal_offset_axes"]


@pytest.mark.parametrize("name", NUMBA_FUNCTIONS + NUMBA_UNARY)
def test_traced_function_gradient_matches_central_differences_numba(name):
    cases = {c[0]: (c[1], c[2]) for c in FUNCTION_CASES}
    cases.update({c[0]: (c[1], [c[2]]) for c in UNARY_CASES})
    fn, shapes = cases[name]
    _check_value_and_grad(fn, _arrays(shapes, seed=8), "numba")


@pytest.mark.slow
def test_builders_match_numpy_with_named_sizes():
    A = sg.tensor("A", ("b", "h", "n", "k"))
    B = sg.tensor("B", ("h", "k", "m"))
    X = sg.tensor("X", ("n", "n"))
    outs = [
        sg.matmul(A, B),
        sg.tril(X, 1),
        sg.triu(X, -1),
        sg.diag(sg.diagonal(X)),
        sg.kron(X, X),
        sg.tensordot(A, B, ([1, 3], [0, 1])),
        sg.inner(X, X),
        sg.dot(X, X),
    ]
    f = sg.compile(outs, inputs=[A, B, X], backend="numba")
    for b, h, n, k, m in [(2, 3, 4, 5, 6), (1, 2, 3, 1, 2)]:
        a, bb, x = _arrays([(b, h, n, k), (h, k, m), (n, n)])
        want = [
            a @ bb,
            np.tril(x, 1),
            np.triu(x, -1),
            np.diag(np.diag(x)),
            np.kron(x, x),
            np.tensordot(a, bb, ([1, 3], [0, 1])),
            np.inner(x, x),
            np.dot(x, x),
        ]
        for got, expected in zip(f(a, bb, x), want):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_gradients_agree_with_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(np_, a, b, c):
        t = np_.einsum("bij,bjk->bik", a, b)
        return np_.sum(np_.tanh(np_.einsum("bik,k->bi", t, c))) + np_.trace(np_.tril(a[0]) @ np_.triu(b[0]))

    arrays = _arrays([(2, 3, 4), (2, 4, 3), (3,)], seed=9)
    vg = sg.value_and_grad(lambda a, b, c: loss(np, a, b, c), argnums=(0, 1, 2), backend="numba")
    value, grads = vg(*arrays)
    jvalue, jgrads = jax.value_and_grad(lambda a, b, c: loss(jnp, a, b, c), argnums=(0, 1, 2))(*arrays)
    np.testing.assert_allclose(value, float(jvalue), rtol=1e-12)
    for got, expected in zip(grads, jgrads):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "subscripts, shapes, message",
    [
        ("ij,jk->i2", [(2, 3), (3, 4)], r"'2' is not a subscript \(a letter"),
        ("ij;jk", [(2, 3), (3, 4)], r"';' is not a subscript"),
        ("ij,jk", [(2, 3)], r"2 operand terms for 1 operand"),
        ("ij->i->j", [(2, 3)], r"more than one '->'"),
        ("ij-j", [(2, 3)], r"a stray '-'"),
        ("ij->ii", [(2, 3)], r"the output repeats 'i'"),
        ("ij->k", [(2, 3)], r"the output's 'k' is in no operand"),
        ("i......j", [(2, 3)], r"an operand has two ellipses"),
    ],
)
def test_bad_einsum_subscripts_raise_parse_error_naming_them(subscripts, shapes, message):
    symbols = [sg.tensor(f"x{i}", shape) for i, shape in enumerate(shapes)]
    with pytest.raises(sg.ParseError, match=r"einsum subscripts .*" + message):
        sg.einsum(subscripts, *symbols)


def test_bad_subscript_error_points_at_its_column():
    with pytest.raises(sg.ParseError) as info:
        sg.einsum("ij,j%", sg.tensor("a", (2, 3)), sg.tensor("b", (3, 2)))
    assert info.value.column == 4 and str(info.value).endswith("ij,j%\n      ^")


@pytest.mark.parametrize(
    "subscripts, shapes, message",
    [
        (
            "ij,jk->ik",
            [(2, 3), (4, 5)],
            r"subscript 'j' has size 3 in one operand and 4 in operand 1 \(shape \(4, 5\)\)",
        ),
        ("ijk->i", [(2, 3)], r"operand 0 has shape \(2, 3\) but its subscripts 'ijk' name 3 dimensions"),
        ("...ij->...", [(2,)], r"operand 0 has shape \(2,\) but its subscripts '...ij' name 2 dimensions"),
        ("...i->i", [(2, 3)], r"the operands have '...' dimensions, so the output needs '...'"),
        ("...i,...i->...", [(2, 3), (4, 3)], r"subscript ... has size 2 in one operand and 4 in operand 1"),
        (
            "ii",
            [(1, 3)],
            r"operand 0 \(shape \(1, 3\)\) repeats subscript 'i' over dimensions of sizes 1 and 3",
        ),
    ],
)
def test_einsum_shape_mismatch_raises_shape_error(subscripts, shapes, message):
    symbols = [sg.tensor(f"x{i}", shape) for i, shape in enumerate(shapes)]
    with pytest.raises(sg.ShapeError, match=r"einsum '.*': " + message):
        sg.einsum(subscripts, *symbols)


def test_traced_einsum_shape_mismatch_names_both_sizes():
    vg = sg.value_and_grad(lambda a, b: np.sum(np.einsum("ij,jk->ik", a, b)), argnums=(0, 1))
    with pytest.raises(sg.ShapeError, match="subscript 'j' has size 3 in one operand and 2 in operand 1"):
        vg(np.ones((2, 3)), np.ones((2, 2)))


def test_einsum_refuses_out_and_named_sizes_that_differ():
    vg = sg.value_and_grad(lambda a: np.sum(np.einsum("ii", a, out=np.empty(()))), backend="numpy")
    with pytest.raises(sg.UnsupportedError, match=r"np.einsum\(\.\.\., out=\.\.\.\)"):
        vg(np.ones((2, 2)))
    with pytest.raises(sg.ShapeError, match=r"subscript 'j' has size d in one operand and e in operand 1"):
        sg.einsum("ij,jk", sg.tensor("P", ("n", "d")), sg.tensor("R", ("e", "m")))


@pytest.mark.parametrize(
    "build, error, message",
    [
        (
            lambda: sg.diagonal(sg.tensor("v", (3,))),
            sg.ShapeError,
            r"diagonal of shape \(3,\): it needs at least two",
        ),
        (lambda: sg.diagonal(sg.tensor("M", (3, 3)), 0, 1, -1), sg.ShapeError, r"axis1 and axis2 are both 1"),
        (
            lambda: sg.diagonal(sg.tensor("N", ("n", "m"))),
            sg.UnsupportedError,
            r"diagonal of a block of named sizes n x m: its length, the smaller of the two, is not known",
        ),
        (
            lambda: sg.diag(sg.tensor("T", (2, 2, 2))),
            sg.ShapeError,
            r"diag of shape \(2, 2, 2\): it takes a vector or a matrix",
        ),
        (
            lambda: sg.tril(sg.tensor("v", (3,))),
            sg.ShapeError,
            r"tril of shape \(3,\): it needs at least two",
        ),
        (
            lambda: sg.triu(sg.tensor("M", (3, 3)), 0.5),
            sg.UnsupportedError,
            r"triu: k must be a Python int, got 0.5",
        ),
        (
            lambda: sg.cross(sg.tensor("p", (2,)), sg.tensor("q", (2,))),
            sg.UnsupportedError,
            r"cross: the vectors of a have length 2; only 3-vectors are supported",
        ),
        (
            lambda: sg.tensordot(sg.tensor("M", (3, 3)), sg.tensor("P", (2, 3)), ([0], [0])),
            sg.ShapeError,
            r"tensordot of shapes \(3, 3\) and \(2, 3\): axis 0 of a \(3\) and axis 0 of b \(2\) differ",
        ),
        (
            lambda: sg.tensordot(sg.tensor("M", (3, 3)), sg.tensor("P", (2, 3)), ([0, 1], [1])),
            sg.ShapeError,
            r"tensordot: 2 axes of a paired with 1 axes of b",
        ),
        (
            lambda: sg.tensordot(sg.tensor("M", (3, 3)), sg.tensor("P", (2, 3)), 3),
            sg.ShapeError,
            r"tensordot of shapes \(3, 3\) and \(2, 3\): cannot sum over 3 axes",
        ),
        (
            lambda: sg.matmul(sg.tensor("U", (2, 3, 4, 5)), sg.tensor("V", (2, 3, 4, 5))),
            sg.ShapeError,
            r"matmul of shapes \(2, 3, 4, 5\) and \(2, 3, 4, 5\): inner dimensions 5 and 4 differ",
        ),
        (
            lambda: sg.matmul(sg.tensor("U", (2, 3, 4, 5)), sg.tensor("W", (4, 5, 6))),
            sg.ShapeError,
            r"matmul batch dimensions of \(2, 3, 4, 5\) and \(4, 5, 6\)",
        ),
        (
            lambda: sg.dot(sg.tensor("U", (2, 3, 4)), sg.tensor("W", (5, 6))),
            sg.ShapeError,
            r"axis 2 of a \(4\) and axis 0 of b \(5\) differ",
        ),
    ],
)
def test_structure_errors_name_the_shapes(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_parser_names_build_the_same_functions():
    shapes = {"A": (3, 3), "B": (3, 3), "u": (3,), "v": (3,)}
    text = (
        "trace(A @ B) + sum(tril(A, -1)) + sum(cross(u, v)) + sum(kron(A, B)) + sum(tensordot(A, B, 1))"
        " + inner(u, v) + sum(diag(u, 1)) + sum(diagonal(A, 1)) + sum(triu(B)) + sum(dot(A, u))"
    )
    e = sg.parse(text, shapes=shapes)
    symbols = [sg.tensor(name, shape) for name, shape in shapes.items()]
    a, b, u, v = _arrays(list(shapes.values()), seed=10)
    want = (
        np.trace(a @ b)
        + np.sum(np.tril(a, -1))
        + np.sum(np.cross(u, v))
        + np.sum(np.kron(a, b))
        + np.sum(np.tensordot(a, b, 1))
        + np.inner(u, v)
        + np.sum(np.diag(u, 1))
        + np.sum(np.diagonal(a, 1))
        + np.sum(np.triu(b))
        + np.sum(np.dot(a, u))
    )
    np.testing.assert_allclose(sg.compile(e, inputs=symbols, backend="numpy")(a, b, u, v), want, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_structure_functions_with_named_sizes_serve_every_size(backend):
    v, X, Y = sg.tensor("v", ("n",)), sg.tensor("X", ("n", "n")), sg.tensor("Y", ("m", "p"))
    outs = [sg.diag(v, 2), sg.diag(v, -1), sg.trace(X, 1), sg.trace(X, -2), sg.tril(Y, 1), sg.triu(Y, -1)]
    outs += [sg.kron(v, Y), sg.cross(v[:3], v[1:4]), sg.einsum("ij,j->i", X, v)]
    f = sg.compile(outs, inputs=[v, X, Y], backend=backend)
    for n, m, p in [(4, 3, 5), (6, 2, 2)]:
        a, x, y = _arrays([(n,), (n, n), (m, p)], seed=n)
        want = [np.diag(a, 2), np.diag(a, -1), np.trace(x, 1), np.trace(x, -2), np.tril(y, 1), np.triu(y, -1)]
        want += [np.kron(a, y), np.cross(a[:3], a[1:4]), x @ a]
        for got, expected in zip(f(a, x, y), want):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_einsum_keeps_float32_and_computes_integers_in_float64(backend):
    A32, B32 = sg.tensor("A", (3, 4), dtype="float32"), sg.tensor("B", (4, 5), dtype="float32")
    out32 = sg.einsum("ij,jk->ik", A32, B32)
    assert out32.dtype == "float32"
    a, b = (x.astype(np.float32) for x in _arrays([(3, 4), (4, 5)]))
    got = sg.compile(out32, inputs=[A32, B32], backend=backend)(a, b)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a @ b, rtol=1e-5)
    # whichever product an integer contraction lowers to (matmul, or multiply and sum), it is float64
    I, J = sg.tensor("I", (2, 3), dtype="int64"), sg.tensor("J", (2, 3), dtype="int64")
    outs = [sg.einsum("ij,kj->ik", I, J), sg.einsum("ij,ij->i", I, J), sg.tensordot(I, J, 2)]
    assert [o.dtype for o in outs] == ["float64"] * 3
    i, j = np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3) - 2
    for got, want in zip(
        sg.compile(outs, inputs=[I, J], backend=backend)(i, j), [i @ j.T, (i * j).sum(1), np.sum(i * j)]
    ):
        np.testing.assert_array_equal(got, want)


JVP_CASES = [
    ("trace", lambda x: sg.trace(x, 1), lambda x: np.trace(x, 1), (4, 4)),
    ("diag", lambda x: sg.diag(x[0], -1), lambda x: np.diag(x[0], -1), (2, 3)),
    ("tril", lambda x: sg.tril(x, -1), lambda x: np.tril(x, -1), (3, 4)),
    ("kron", lambda x: sg.kron(x, x), lambda x: np.kron(x, x), (2, 3)),
    ("cross", lambda x: sg.cross(x, x[::-1]), lambda x: np.cross(x, x[::-1]), (2, 3)),
    ("matmul_4d", lambda x: sg.reshape(x, (1, 2, 2, 3)) @ sg.reshape(x, (2, 1, 3, 2)), None, (2, 6)),
    ("einsum_diag_sum", lambda x: sg.einsum("ii,ij->j", x, x), lambda x: np.einsum("ii,ij->j", x, x), (3, 3)),
]


@pytest.mark.parametrize("name, build, truth, shape", JVP_CASES, ids=[c[0] for c in JVP_CASES])
def test_jvp_of_the_structure_functions_matches_central_differences(name, build, truth, shape):
    if truth is None:
        truth = lambda x: x.reshape(1, 2, 2, 3) @ x.reshape(2, 1, 3, 2)  # noqa: E731
    x0, t0 = _arrays([shape, shape], seed=11)
    X = sg.tensor("X", shape)
    tangent = sg.compile(sg.jvp(build(X), X, t0), inputs=[X], backend="numpy")(x0)
    h = 1e-6
    np.testing.assert_allclose(
        tangent, (truth(x0 + h * t0) - truth(x0 - h * t0)) / (2 * h), rtol=1e-6, atol=1e-8
    )


def _random_einsum(rng):
    """Random subscripts over labels of fixed sizes: 1-3 operands of rank 0-3 (labels may repeat
    within one), an explicit output (a random subset, in random order) or the implicit one."""
    sizes = {"a": 2, "b": 3, "c": 4, "d": 2}
    terms = ["".join(rng.choice(list(sizes), size=rng.integers(0, 4))) for _ in range(rng.integers(1, 4))]
    used = sorted(set("".join(terms)))
    subscripts = ",".join(terms)
    if rng.random() < 0.7:
        subscripts += "->" + "".join(rng.permutation([c for c in used if rng.random() < 0.5]))
    return subscripts, [tuple(sizes[c] for c in term) for term in terms]


@pytest.mark.parametrize("seed", range(40))
def test_random_einsum_value_and_gradient_match_numpy_and_differences(seed):
    subscripts, shapes = _random_einsum(np.random.default_rng(seed))
    arrays = _arrays(shapes, seed=seed)
    symbols = [sg.tensor(f"x{i}", shape) for i, shape in enumerate(shapes)]
    got = sg.compile(sg.einsum(subscripts, *symbols), inputs=symbols, backend="numpy")(*arrays)
    np.testing.assert_allclose(
        got, np.einsum(subscripts, *arrays), rtol=1e-12, atol=1e-12, err_msg=subscripts
    )
    _check_value_and_grad(lambda *xs: np.einsum(subscripts, *xs), arrays, "numpy")


def test_traced_einsum_with_a_constant_operand_differentiates_the_traced_one():
    M = _weights((4, 4), seed=12)
    x0 = RNG.standard_normal(4)
    vg = sg.value_and_grad(
        lambda x: np.einsum("i,ij,j->", x, M, x) + np.trace(M @ np.outer(x, x)), backend="numba"
    )
    value, grad = vg(x0)
    np.testing.assert_allclose(value, 2 * x0 @ M @ x0, rtol=1e-12)
    np.testing.assert_allclose(grad, 2 * (M + M.T) @ x0, rtol=1e-12)

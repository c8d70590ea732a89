"""sg.vmap: batching on the graph, checked against loops over examples (numpy by hand and
central differences), against JAX's vmap when it is importable, and for one compile serving
every batch size."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import ShapeError, UnsupportedError

RNG = np.random.default_rng(20)


def central_grad(f, x, eps=1e-6):
    """The gradient of the scalar f at x by central differences."""
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        g[idx] = (f(x + step) - f(x - step)) / (2 * eps)
    return g


def logistic_loss(w, x, t):
    p = 1 / (1 + np.exp(-(x @ w)))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def mlp_loss(params, x, y):
    W1, b1, W2, b2 = params
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    m = np.max(z)
    lse = np.log(np.sum(np.exp(z - m))) + m
    return -np.sum(y * (z - lse))


def mlp_by_hand(params, X, Y):
    """Per-example gradients of mlp_loss, the backward pass written out in numpy."""
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = p * Y.sum(axis=1, keepdims=True) - Y
    dh = (dz @ W2.T) * (1 - h**2)
    return X[:, :, None] * dh[:, None, :], dh, h[:, :, None] * dz[:, None, :], dz


def mlp_params(d=5, k=4, c=3):
    return (RNG.normal(size=(d, k)), RNG.normal(size=k), RNG.normal(size=(k, c)), RNG.normal(size=c))


# ---------------------------------------------------------------- per-example gradients


def test_per_example_gradients_match_central_differences_of_each_example():
    w, X = RNG.normal(size=3), RNG.normal(size=(6, 3))
    t = (RNG.random(6) > 0.5).astype(float)
    G = sg.vmap(sg.grad(logistic_loss), in_axes=(None, 0, 0), backend="numpy")(w, X, t)
    assert G.shape == (6, 3)
    for i in range(6):
        want = central_grad(lambda v: logistic_loss(v, X[i], t[i]), w)
        np.testing.assert_allclose(G[i], want, rtol=1e-6, atol=1e-8)


def test_mlp_per_example_gradients_match_the_hand_written_backward_pass():
    params = mlp_params()
    X, Y = RNG.normal(size=(7, 5)), np.eye(3)[RNG.integers(0, 3, 7)]
    G = sg.vmap(sg.grad(mlp_loss), in_axes=(None, 0, 0), backend="numpy")(params, X, Y)
    assert isinstance(G, tuple) and len(G) == 4
    for got, want in zip(G, mlp_by_hand(params, X, Y)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # and one example against central differences of the loss itself
    want_b1 = central_grad(lambda b: mlp_loss((params[0], b, params[2], params[3]), X[3], Y[3]), params[1])
    np.testing.assert_allclose(G[1][3], want_b1, rtol=1e-6, atol=1e-8)


def test_one_numba_compile_serves_batch_sizes_1_7_and_100():
    w = RNG.normal(size=3)
    g = sg.vmap(sg.grad(logistic_loss), in_axes=(None, 0, 0))
    for n in (1, 7, 100, 3):  # 3: the batch size equals the feature count
        X, t = RNG.normal(size=(n, 3)), (RNG.random(n) > 0.5).astype(float)
        p = 1 / (1 + np.exp(-X @ w))
        np.testing.assert_allclose(g(w, X, t), (p - t)[:, None] * X, rtol=1e-12, atol=1e-14)
    assert g.trace_count == 1
    assert g.compile_count == 1
    assert len(g.compiles) == 1


def test_value_and_grad_per_example():
    w, X = RNG.normal(size=3), RNG.normal(size=(4, 3))
    t = (RNG.random(4) > 0.5).astype(float)
    values, grads = sg.vmap(sg.value_and_grad(logistic_loss), in_axes=(None, 0, 0), backend="numpy")(w, X, t)
    np.testing.assert_allclose(values, [logistic_loss(w, X[i], t[i]) for i in range(4)], rtol=1e-12)
    p = 1 / (1 + np.exp(-X @ w))
    np.testing.assert_allclose(grads, (p - t)[:, None] * X, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- in_axes / out_axes


def test_in_axes_int_negative_and_none():
    A, v = RNG.normal(size=(3, 5)), RNG.normal(size=3)
    f = sg.vmap(lambda a, b: a * b + np.sum(a), in_axes=(1, None), backend="numpy")
    want = np.stack([A[:, j] * v + A[:, j].sum() for j in range(5)])
    np.testing.assert_allclose(f(A, v), want, rtol=1e-12)
    g = sg.vmap(lambda a, b: a * b + np.sum(a), in_axes=(-1, None), backend="numpy")
    np.testing.assert_allclose(g(A, v), want, rtol=1e-12)


def test_in_axes_pytree_prefix():
    params = {"W": RNG.normal(size=(4, 2, 3)), "b": RNG.normal(size=2)}
    x = RNG.normal(size=3)

    def layer(p, x):
        return np.tanh(p["W"] @ x + p["b"])

    f = sg.vmap(layer, in_axes=({"W": 0, "b": None}, None), backend="numpy")
    want = np.stack([np.tanh(params["W"][i] @ x + params["b"]) for i in range(4)])
    np.testing.assert_allclose(f(params, x), want, rtol=1e-12)


def test_out_axes_moves_the_batch_axis_and_repeats_unmapped_outputs():
    A, c = RNG.normal(size=(4, 3)), RNG.normal(size=2)

    def f(a, c):
        return np.outer(a, c), c * 2.0, np.sum(a)

    outer, doubled, total = sg.vmap(f, in_axes=(0, None), out_axes=(-1, 0, 0), backend="numpy")(A, c)
    np.testing.assert_allclose(outer, np.stack([np.outer(a, c) for a in A], axis=-1), rtol=1e-12)
    np.testing.assert_allclose(doubled, np.tile(2 * c, (4, 1)), rtol=1e-12)  # the same for every example
    np.testing.assert_allclose(total, A.sum(axis=1), rtol=1e-12)
    same, _ = sg.vmap(lambda a, c: (c + 1.0, a), in_axes=(0, None), out_axes=(None, 1), backend="numpy")(A, c)
    np.testing.assert_allclose(same, c + 1.0)


# ---------------------------------------------------------------- composition


def test_nested_vmap_is_a_matrix_of_pairwise_values():
    A, B = RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3))

    def sqdist(a, b):
        return np.sum((a - b) ** 2)

    pairwise = sg.vmap(sg.vmap(sqdist, in_axes=(None, 0)), in_axes=(0, None), backend="numpy")
    want = ((A[:, None, :] - B[None, :, :]) ** 2).sum(axis=-1)
    np.testing.assert_allclose(pairwise(A, B), want, rtol=1e-12)


def test_vmap_of_jacobian():
    X = RNG.normal(size=(4, 3))

    def f(x):
        return np.sin(x) * np.sum(x**2)

    J = sg.vmap(sg.jacobian(f), backend="numpy")(X)
    for i in range(4):
        want = np.stack([central_grad(lambda v, k=k: f(v)[k], X[i]) for k in range(3)])
        np.testing.assert_allclose(J[i], want, rtol=1e-6, atol=1e-8)


def test_vmap_of_hessian_and_of_hessian_vector_products():
    X, V = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))

    def f(x):
        return np.sum(x**3) + x[0] * x[1]

    H = sg.vmap(sg.hessian(f), backend="numpy")(X)
    for i in range(4):
        want = np.stack(
            [central_grad(lambda v, k=k: 3 * v[k] ** 2 + (v[1], v[0], 0)[k], X[i]) for k in range(3)]
        )
        np.testing.assert_allclose(H[i], want, rtol=1e-6, atol=1e-8)

    def hvp(x, v):
        return sg.jvp(sg.grad(f), (x,), (v,))[1]

    np.testing.assert_allclose(sg.vmap(hvp, backend="numpy")(X, V), np.einsum("bij,bj->bi", H, V), rtol=1e-10)
    hvp2 = sg.vmap(lambda x, v: sg.hvp(f, (x,), (v,)), backend="numpy")
    np.testing.assert_allclose(hvp2(X, V), np.einsum("bij,bj->bi", H, V), rtol=1e-10)


def test_jacobian_of_vmap_is_block_diagonal():
    X = RNG.normal(size=(3, 2))
    J = sg.jacobian(sg.vmap(np.sin), backend="numpy")(X)
    want = np.zeros((3, 2, 3, 2))
    for i in range(3):
        for k in range(2):
            want[i, k, i, k] = np.cos(X[i, k])
    np.testing.assert_allclose(J, want, rtol=1e-12)


def test_vmap_of_vjp():
    X, C = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))

    def pullback(x, c):
        return sg.vjp(np.sin, x)[1](c)[0]

    np.testing.assert_allclose(sg.vmap(pullback, backend="numpy")(X, C), np.cos(X) * C, rtol=1e-12)


def test_grad_of_vmap_and_compile_of_vmap():
    w, X = RNG.normal(size=3), RNG.normal(size=(6, 3))
    t = (RNG.random(6) > 0.5).astype(float)
    per_example = sg.vmap(logistic_loss, in_axes=(None, 0, 0))

    def mean_loss(w, X, t):
        return np.mean(per_example(w, X, t))

    g = sg.grad(mean_loss, backend="numpy")(w, X, t)
    want = central_grad(lambda v: np.mean([logistic_loss(v, X[i], t[i]) for i in range(6)]), w)
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-9)
    jitted = sg.compile(per_example, backend="numpy")
    np.testing.assert_allclose(jitted(w, X, t), [logistic_loss(w, X[i], t[i]) for i in range(6)], rtol=1e-12)


def test_gather_with_mapped_indices_and_its_gradient():
    table, idx = RNG.normal(size=(4, 5)), RNG.integers(-5, 5, size=(4, 2))

    def pick(row, i):
        return np.sum(row[i] ** 2)

    values = sg.vmap(pick, backend="numpy")(table, idx)
    np.testing.assert_allclose(values, [np.sum(table[b][idx[b]] ** 2) for b in range(4)], rtol=1e-12)
    grads = sg.vmap(sg.grad(pick), backend="numpy")(table, idx)
    for b in range(4):
        want = np.zeros(5)
        np.add.at(want, idx[b], 2 * table[b][idx[b]])
        np.testing.assert_allclose(grads[b], want, rtol=1e-12)
    shared = sg.vmap(pick, in_axes=(None, 0), backend="numpy")(table[0], idx)
    np.testing.assert_allclose(shared, [np.sum(table[0][idx[b]] ** 2) for b in range(4)], rtol=1e-12)


def test_batched_matrix_products_of_every_rank_pairing():
    M3, M2, v2 = RNG.normal(size=(3, 2, 4, 5)), RNG.normal(size=(3, 5, 2)), RNG.normal(size=(3, 5))
    S, W, u = RNG.normal(size=(2, 4, 5)), RNG.normal(size=(5, 2)), RNG.normal(size=5)
    cases = [  # (f, args, in_axes, per-example numpy)
        (lambda a, b: a @ b, (M3, W), (0, None)),
        (lambda a, b: a @ b, (S, M2), (None, 0)),
        (lambda a, b: a @ b, (M3, M2), (0, 0)),
        (lambda a, b: a @ b, (v2, v2), (0, 0)),
        (lambda a, b: a @ b, (W.T, v2), (None, 0)),
        (lambda a, b: a @ b, (v2, np.swapaxes(S, 1, 2)), (0, None)),
        (lambda a, b: a @ b, (u, M2), (None, 0)),
    ]
    for f, args, axes in cases:
        got = sg.vmap(f, in_axes=axes, backend="numpy")(*args)
        want = np.stack([f(*[a[i] if ax == 0 else a for a, ax in zip(args, axes)]) for i in range(3)])
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=str(axes))


# ---------------------------------------------------------------- errors


def test_an_op_without_batching_rule_is_refused_naming_the_op_and_vmap():
    A = RNG.normal(size=(2, 3, 3)) + 3 * np.eye(3)
    with pytest.raises(
        UnsupportedError, match=r"vmap: the op 'inv' cannot be batched: its kernel takes one 2-D"
    ):
        sg.vmap(np.linalg.inv, backend="numpy")(A)


def test_vmap_errors_name_what_was_wrong():
    A, B = RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3))
    with pytest.raises(
        ShapeError, match=r"mapped axes have different sizes: .* in argument 0, .* in argument 1"
    ):
        sg.vmap(lambda a, b: a + b, backend="numpy")(A, B)
    with pytest.raises(UnsupportedError, match=r"in_axes has 1 entries but the function was called with 2"):
        sg.vmap(lambda a, b: a + b, in_axes=(0,), backend="numpy")(A, A)
    with pytest.raises(UnsupportedError, match=r"out_axes is None for output, but it depends on the mapped"):
        sg.vmap(lambda a: a * 2, out_axes=None, backend="numpy")(A)
    with pytest.raises(ShapeError, match=r"in_axes 2 is out of range for 2 dimensions"):
        sg.vmap(lambda a: a * 2, in_axes=2, backend="numpy")(A)
    with pytest.raises(ShapeError, match=r"in_axes maps axis 0 of argument 1, a scalar"):
        sg.vmap(lambda a, s: a * s, backend="numpy")(A, 2.0)
    with pytest.raises(UnsupportedError, match=r"in_axes maps no argument"):
        sg.vmap(lambda a: a * 2, in_axes=None, backend="numpy")(A)
    with pytest.raises(
        UnsupportedError, match=r"in_axes must be an int, None, or a pytree of them .* got 'x'"
    ):
        sg.vmap(lambda a: a, in_axes="x")
    with pytest.raises(
        UnsupportedError, match=r"in_axes\[0\] at the top level the axes \{'W': 0\} do not match"
    ):
        sg.vmap(lambda p: p, in_axes=({"W": 0},), backend="numpy")(A)
    with pytest.raises(UnsupportedError, match=r"in_axes must be an int, None, or a tuple .* got a dict"):
        sg.vmap(lambda a: a, in_axes={"a": 0})
    with pytest.raises(UnsupportedError, match=r"vmap: 3 is not a function"):
        sg.vmap(3)
    with pytest.raises(UnsupportedError, match=r"pass the arguments by position .* keyword argument\(s\) a"):
        sg.vmap(lambda a: a)(a=A)


# ---------------------------------------------------------------- against JAX


def test_matches_jax_vmap_of_grad_and_in_out_axes():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def jax_mlp(params, x, y):
        W1, b1, W2, b2 = params
        z = jnp.tanh(x @ W1 + b1) @ W2 + b2
        return -jnp.sum(y * (z - jax.scipy.special.logsumexp(z)))

    params = mlp_params()
    X, Y = RNG.normal(size=(6, 5)), np.eye(3)[RNG.integers(0, 3, 6)]
    ours = sg.vmap(sg.grad(mlp_loss), in_axes=(None, 0, 0), backend="numpy")(params, X, Y)
    theirs = jax.vmap(jax.grad(jax_mlp), in_axes=(None, 0, 0))(params, X, Y)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)

    A, c = RNG.normal(size=(2, 4, 3)), RNG.normal(size=2)

    def f(a, c):
        return a.T * c, np.sum(a, axis=0)

    def jf(a, c):
        return a.T * c, jnp.sum(a, axis=0)

    ours = sg.vmap(f, in_axes=(1, None), out_axes=(2, -1), backend="numpy")(A, c)
    theirs = jax.vmap(jf, in_axes=(1, None), out_axes=(2, -1))(A, c)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12)

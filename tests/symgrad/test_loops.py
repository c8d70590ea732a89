"""Loops that stay loops: sg.scan, sg.fori_loop, sg.while_loop.

Every value is checked against the same computation written as a plain Python loop over numpy,
every derivative against central differences of that loop."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import ShapeError, UnsupportedError
from loop_programs import central, rnn_numpy, rnn_scan

RNG = np.random.default_rng(19)


# an RNN written both ways (loop_programs): rnn_numpy, rnn_scan


def _rnn_args(T, dtype=np.float64):
    return [
        (RNG.normal(size=(3, 3)) * 0.5).astype(dtype),
        RNG.normal(size=(3, 2)).astype(dtype),
        RNG.normal(size=3).astype(dtype),
        RNG.normal(size=(T, 2)).astype(dtype),
    ]


def test_traced_scan_value_and_gradients_match_the_python_loop_for_every_length_with_one_compile():
    vg = sg.value_and_grad(rnn_scan, argnums=(0, 1, 2, 3), backend="numpy")
    for T in (1, 7, 50):
        args = _rnn_args(T)
        value, grads = vg(*args)
        assert value == pytest.approx(rnn_numpy(*args), rel=1e-12)
        for k, g in enumerate(grads):
            num = central(lambda a: rnn_numpy(*args[:k], a, *args[k + 1 :]), args[k])
            np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)
    # a loop's length stays symbolic at size 1 too: one compile for every T
    assert vg.compile_count == 1
    source = vg.source
    assert source.count("for ") == 2  # one forward loop, one reverse loop, whatever T


def test_builder_scan_over_a_symbolic_length_is_one_compile_for_every_length():
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))

    def step(h, x):
        h = sg.tanh(W @ h + x)
        return h, sg.sum(h * h)

    h, ys = sg.scan(step, h0, xs)
    loss = sg.sum(h) + sg.sum(ys)
    vg = sg.value_and_grad(loss, wrt=[W], inputs=[W, h0, xs], backend="numpy")
    eye = np.eye(2, 3)
    for T in (1, 7, 50):
        W0, _, h00, X = _rnn_args(T)
        X = X @ eye  # (T, 3)
        value, (gW,) = vg(W0, h00, X)
        expected = rnn_numpy(W0, np.eye(3), h00, X)
        assert value == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(
            gW, central(lambda w: rnn_numpy(w, np.eye(3), h00, X), W0), rtol=1e-6, atol=1e-7
        )


def test_empty_loop_returns_the_carry_unchanged_and_no_ys():
    def f(h0, xs):
        h, ys = sg.scan(lambda h, x: (h * x[0] + x[1], h * 2.0), h0, xs)
        return h, ys

    run = sg.compile(f, backend="numpy")
    h0 = np.array([1.0, 2.0, 3.0])
    h, ys = run(h0, np.zeros((0, 2)))
    np.testing.assert_array_equal(h, h0)
    assert ys.shape == (0, 3)
    vg = sg.value_and_grad(lambda h0, xs: np.sum(f(h0, xs)[0] ** 2), backend="numpy")
    value, g = vg(h0, np.zeros((0, 2)))
    assert value == pytest.approx(14.0)
    np.testing.assert_allclose(g, 2 * h0)


def test_builder_api_scan_of_a_pytree_carry_of_several_shapes():
    # carry: a scalar, a vector and a matrix in a dict; xs: a tuple of a vector stack and scalars
    a, b, M, xs, ss = (
        sg.scalar("a"),
        sg.tensor("b", (2,)),
        sg.tensor("M", (2, 2)),
        sg.tensor("xs", ("T", 2)),
        sg.tensor("ss", ("T",)),
    )
    w = sg.tensor("w", (2,))

    def step(c, x):
        v, s = x
        b_new = sg.sin(c["b"] * w + v)
        M_new = c["M"] * 0.9 + sg.outer(b_new, v) * s
        a_new = c["a"] + sg.sum(M_new @ b_new)
        return {"a": a_new, "b": b_new, "M": M_new}, (a_new, b_new)

    carry, (ys_a, ys_b) = sg.scan(step, {"a": a, "b": b, "M": M}, (xs, ss))
    loss = carry["a"] + sg.sum(carry["M"]) + sg.sum(ys_a) + sg.sum(ys_b**2)

    def reference(a, b, M, w, xs, ss):
        total = 0.0
        for v, s in zip(xs, ss):
            b = np.sin(b * w + v)
            M = M * 0.9 + np.outer(b, v) * s
            a = a + np.sum(M @ b)
            total += a + np.sum(b**2)
        return a + np.sum(M) + total

    wrt = [a, b, M, w, xs, ss]
    vg = sg.value_and_grad(loss, wrt=wrt, backend="numpy")
    values = [0.3, RNG.normal(size=2), RNG.normal(size=(2, 2)), RNG.normal(size=2)]
    values += [RNG.normal(size=(6, 2)), RNG.normal(size=6)]
    value, grads = vg(*values)
    assert value == pytest.approx(reference(*values), rel=1e-12)
    for k, g in enumerate(grads):
        num = central(lambda x: reference(*values[:k], x, *values[k + 1 :]), values[k])
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


def test_float32_carry_keeps_its_dtype():
    vg = sg.value_and_grad(rnn_scan, argnums=0, backend="numpy")
    args32 = _rnn_args(5, np.float32)
    value, g = vg(*args32)
    assert np.asarray(value).dtype == np.float32 and g.dtype == np.float32
    args64 = [a.astype(np.float64) for a in args32]
    assert float(value) == pytest.approx(rnn_numpy(*args64), rel=1e-5)
    np.testing.assert_allclose(g, central(lambda W: rnn_numpy(W, *args64[1:]), args64[0]), rtol=1e-3)


def test_reverse_scan_runs_from_the_last_step_and_keeps_ys_in_xs_order():
    def f(c0, xs):
        return sg.scan(lambda c, x: (c * 0.5 + x, c * x), c0, xs, reverse=True)

    def reference(c0, xs):
        c, ys = c0, np.zeros_like(xs)
        for t in reversed(range(len(xs))):
            ys[t] = c * xs[t]
            c = c * 0.5 + xs[t]
        return c, ys

    xs = RNG.normal(size=9)
    c, ys = sg.compile(f, backend="numpy")(0.7, xs)
    c_ref, ys_ref = reference(0.7, xs)
    assert c == pytest.approx(c_ref, rel=1e-14)
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-14)
    g = sg.grad(lambda c0, xs: np.sum(f(c0, xs)[1] ** 2) + f(c0, xs)[0], argnums=1, backend="numpy")(0.7, xs)

    def loss(xs):
        c, ys = reference(0.7, xs)
        return np.sum(ys**2) + c

    np.testing.assert_allclose(g, central(loss, xs), rtol=1e-6)


def test_second_derivatives_and_forward_mode_through_scan():
    W, U, h0, xs = _rnn_args(4)
    H = sg.hessian(rnn_scan, argnums=2, backend="numpy")(W, U, h0, xs)
    g = sg.grad(rnn_scan, argnums=2, backend="numpy")
    H_num = np.stack([central(lambda h: g(W, U, h, xs)[j], h0) for j in range(3)])
    np.testing.assert_allclose(H, H_num, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    # forward mode: the tangent along a direction of W, against a central difference
    direction = RNG.normal(size=W.shape)
    jvp = sg.compile(
        lambda W: sg.jvp(lambda W: rnn_scan(W, U, h0, xs), (W,), (direction,))[1], backend="numpy"
    )
    expected = (
        rnn_numpy(W + 1e-6 * direction, U, h0, xs) - rnn_numpy(W - 1e-6 * direction, U, h0, xs)
    ) / 2e-6
    assert float(jvp(W)) == pytest.approx(expected, rel=1e-6)


def test_closed_over_weights_become_loop_constants_and_get_gradients():
    w = sg.scalar("w")
    c, _ = sg.scan(lambda c, x: (c * w + sg.exp(w) * x, None), sg.scalar("c0"), sg.tensor("xs", ("T",)))
    scan_node = c.inputs[0]
    assert any(i is w for i in scan_node.inputs)  # c * w reads w; exp(w) is hoisted as a whole
    assert any(i.op == "exp" for i in scan_node.inputs)
    vg = sg.value_and_grad(c, wrt=[w], backend="numpy")
    xs = RNG.normal(size=5)

    def reference(w):
        c = 0.4
        for x in xs:
            c = c * w + np.exp(w) * x
        return c

    value, (dw,) = vg(0.8, 0.4, xs)
    assert value == pytest.approx(reference(0.8), rel=1e-13)
    assert dw == pytest.approx(float(central(reference, 0.8)), rel=1e-6)


def test_nested_scan_gradient():
    def f(a, xs):
        def outer(c, row):
            inner, _ = sg.scan(lambda d, x: (np.sin(d * a + x), None), c, row)
            return inner, inner * c

        c, ys = sg.scan(outer, 0.5, xs)
        return c + np.sum(ys)

    def reference(a, xs):
        c, total = 0.5, 0.0
        for row in xs:
            d = c
            for x in row:
                d = np.sin(d * a + x)
            total += d * c
            c = d
        return c + total

    xs = RNG.normal(size=(4, 3))
    value, g = sg.value_and_grad(f, backend="numpy")(0.9, xs)
    assert value == pytest.approx(reference(0.9, xs), rel=1e-13)
    assert g == pytest.approx(float(central(lambda a: reference(a, xs), 0.9)), rel=1e-6)


# ---------------------------------------------------------------- fori_loop and while_loop


def test_fori_loop_matches_the_python_loop_with_its_gradient():
    def f(x, v):
        return np.sum(sg.fori_loop(2, 9, lambda i, y: np.cos(y * x) + i * 0.1 * v, v))

    def reference(x, v):
        y = v
        for i in range(2, 9):
            y = np.cos(y * x) + i * 0.1 * v
        return np.sum(y)

    v = RNG.normal(size=3)
    value, (gx, gv) = sg.value_and_grad(f, argnums=(0, 1), backend="numpy")(0.6, v)
    assert value == pytest.approx(reference(0.6, v), rel=1e-13)
    assert gx == pytest.approx(float(central(lambda x: reference(x, v), 0.6)), rel=1e-6)
    np.testing.assert_allclose(gv, central(lambda v: reference(0.6, v), v), rtol=1e-6)


def test_fori_loop_with_a_symbolic_upper_bound():
    def f(xs):
        return sg.fori_loop(0, xs.shape[0], lambda i, s: s + xs[i] * i, 0.0)

    run = sg.compile(f, backend="numpy")
    for n in (3, 8):
        xs = RNG.normal(size=n)
        assert float(run(xs)) == pytest.approx(float(np.sum(xs * np.arange(n))), rel=1e-13)
    assert run.compile_count == 1


def test_while_loop_stops_when_the_condition_fails_and_differentiates():
    # Newton's iteration for sqrt(a), stopped when the step is small, at most 30 steps
    def f(a):
        def body(s):
            x, _ = s
            new = 0.5 * (x + a / x)
            return new, np.abs(new - x)

        x, _ = sg.while_loop(lambda s: s[1] > 1e-12, body, (a, 1.0), max_steps=30)
        return x

    def reference(a):
        x, step, n = a, 1.0, 0
        while step > 1e-12 and n < 30:
            new = 0.5 * (x + a / x)
            x, step, n = new, abs(new - x), n + 1
        return x

    value, g = sg.value_and_grad(f, backend="numpy")(2.0)
    assert value == pytest.approx(reference(2.0), rel=1e-15)
    assert g == pytest.approx(float(central(reference, 2.0)), rel=1e-6)

    # a loop that runs out of steps stops at max_steps
    count = sg.compile(lambda x: sg.while_loop(lambda v: v < 100.0, lambda v: v + 1.0, x, max_steps=5))
    assert float(count(0.0)) == 5.0 and float(count(98.5)) == 100.5


# ---------------------------------------------------------------- the generated source


def test_generated_source_is_one_loop_whatever_the_trip_count():
    lines = []
    for T in (10, 1000):
        h0, xs, W = sg.tensor("h0", (4,)), sg.tensor("xs", (T, 4)), sg.tensor("W", (4, 4))
        h, ys = sg.scan(lambda h, x: (sg.tanh(W @ h + x), sg.sum(h)), h0, xs)
        vg = sg.value_and_grad(sg.sum(h) + sg.sum(ys), wrt=[W], backend="numpy")
        lines.append(vg.source.count("\n"))
        assert vg.source.count("for t") == 2
    assert lines[0] == lines[1]


# ---------------------------------------------------------------- errors


def test_errors_name_what_is_wrong():
    c0, xs = sg.scalar("c0"), sg.tensor("xs", ("T",))
    v = sg.tensor("v", (3,))
    with pytest.raises(ShapeError, match=r"changes the shape of carry leaf 0 from \(\) to \(3,\)"):
        sg.scan(lambda c, x: (c * v, None), c0, xs)
    with pytest.raises(UnsupportedError, match="changes the dtype of carry leaf 0 from float64 to float32"):
        sg.scan(lambda c, x: (sg.cast(c, "float32"), None), c0, xs)
    with pytest.raises(UnsupportedError, match=r"f must return a pair \(carry, y\), got Expr"):
        sg.scan(lambda c, x: c + x, c0, xs)
    with pytest.raises(UnsupportedError, match="f returns a carry of structure"):
        sg.scan(lambda c, x: ((c, c), None), c0, xs)
    with pytest.raises(
        ShapeError, match="xs leaves have different leading lengths: leaf 0 has T, leaf 1 has 4"
    ):
        sg.scan(lambda c, x: (c, None), c0, (xs, sg.tensor("u", (4,))))
    with pytest.raises(UnsupportedError, match="with no xs, give the number of steps: length="):
        sg.scan(lambda c, x: (c, None), c0)
    with pytest.raises(ShapeError, match="length=5 does not match the xs leading length T"):
        sg.scan(lambda c, x: (c, None), c0, xs, length=5)
    with pytest.raises(ShapeError, match="xs leaf 0 is a scalar"):
        sg.scan(lambda c, x: (c, None), c0, c0)
    with pytest.raises(UnsupportedError, match="give max_steps="):
        sg.while_loop(lambda c: c < 1, lambda c: c + 1, c0)
    with pytest.raises(ShapeError, match="cond_fun must return a bool scalar"):
        sg.while_loop(lambda c: c, lambda c: c + 1, c0, max_steps=3)
    with pytest.raises(UnsupportedError, match="fori_loop: upper is a computed value"):
        sg.fori_loop(0, c0, lambda i, c: c, c0)
    c, _ = sg.scan(lambda c, x: (c * 0.5, None), c0, length="T")
    with pytest.raises(
        UnsupportedError, match="a loop's length T is unknown when it runs: no input has an axis of size T"
    ):
        sg.compile(c, backend="numpy")
    c, _ = sg.scan(lambda c, x: (c * c0, None), c0, length=3)
    with pytest.raises(UnsupportedError, match="sparsity through the loop scan"):
        sg.hessian_sparsity(c, [c0])
    with pytest.raises(UnsupportedError, match="the op 'scan' has no SymPy form"):
        sg.to_sympy(c)


# ---------------------------------------------------------------- numba


@pytest.mark.slow
def test_numba_scan_matches_the_python_loop():
    vg = sg.value_and_grad(rnn_scan, argnums=(0, 3))
    for T in (0, 6):
        args = _rnn_args(T)
        value, (gW, gx) = vg(*args)
        assert value == pytest.approx(rnn_numpy(*args), rel=1e-12)
        np.testing.assert_allclose(
            gW, central(lambda W: rnn_numpy(W, *args[1:]), args[0]), rtol=1e-6, atol=1e-8
        )
        np.testing.assert_allclose(
            gx, central(lambda x: rnn_numpy(*args[:3], x), args[3]), rtol=1e-6, atol=1e-8
        )
    assert vg.compile_count <= 2  # T = 0 is a size class of its own


# ---------------------------------------------------------------- checkpointed reverse mode


@pytest.mark.parametrize(
    "T, k, reverse", [(10, 3, False), (12, 4, False), (10, 3, True), (5, 7, False), (0, 2, False)]
)
def test_checkpointed_reverse_mode_agrees_with_storing_every_carry(T, k, reverse):
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", (T, 3))
    weights = np.arange(1.0, T + 1)

    def loss(checkpoint):
        def step(h, x):
            h = sg.tanh(W @ h + x)
            return h, sg.sum(h * h)

        h, ys = sg.scan(step, h0, xs, reverse=reverse, checkpoint=checkpoint)
        return sg.sum(h) + sg.sum(ys * weights)

    args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(T, 3))]
    plain = sg.value_and_grad(loss(None), wrt=[W, h0, xs], backend="numpy")(*args)
    checkpointed = sg.value_and_grad(loss(k), wrt=[W, h0, xs], backend="numpy")(*args)
    assert checkpointed[0] == pytest.approx(plain[0], abs=1e-12)
    for a, b in zip(plain[1], checkpointed[1]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def test_checkpointed_scan_stores_one_carry_per_block():
    h0, xs = sg.tensor("h0", (3,)), sg.tensor("xs", (100, 3))
    h, _ = sg.scan(lambda h, x: (sg.sin(h) + x, None), h0, xs, checkpoint=10)
    source = sg.value_and_grad(sg.sum(h), wrt=[h0], backend="numpy").source
    # the carries kept: 10 block starts and one block of 10 recomputed, never 100
    assert "(100, 3)" not in source.replace("xs", "")
    assert "np.empty((10, 3)" in source


def test_checkpoint_errors():
    c0 = sg.scalar("c0")
    with pytest.raises(UnsupportedError, match="checkpoint must be a positive int"):
        sg.scan(lambda c, x: (c * x, None), c0, sg.tensor("xs", (8,)), checkpoint=0)


@pytest.mark.slow
def test_numba_scan_with_a_float32_carry():
    vg = sg.value_and_grad(rnn_scan, argnums=0)
    args32 = _rnn_args(5, np.float32)
    value, g = vg(*args32)
    assert g.dtype == np.float32
    args64 = [a.astype(np.float64) for a in args32]
    assert float(value) == pytest.approx(rnn_numpy(*args64), rel=1e-5)
    np.testing.assert_allclose(
        g, central(lambda W: rnn_numpy(W, *args64[1:]), args64[0]), rtol=1e-3, atol=1e-5
    )


def test_an_index_read_inside_a_loop_is_checked_by_the_entry():
    W, idx = sg.tensor("W", (5,)), sg.tensor("idx", ("T",), dtype="int64")
    c, _ = sg.scan(lambda c, i: (c * 0.5 + W[i], None), sg.scalar("c0"), idx)
    vg = sg.value_and_grad(c, wrt=[W], backend="numpy")
    value, (dW,) = vg(np.arange(5.0), 0.0, np.array([1, 4, 2]))
    assert value == pytest.approx((1 * 0.5 + 4) * 0.5 + 2)
    np.testing.assert_allclose(dW, [0, 0.25, 1, 0, 0.5])
    with pytest.raises(sg.InputError, match="out of range for the axis it indexes"):
        vg(np.arange(5.0), 0.0, np.array([1, 7, 2]))


def test_second_derivatives_through_a_checkpointed_scan_agree_with_the_plain_one():
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", (7, 3))

    def loss(checkpoint):
        def step(h, x):
            h = sg.tanh(W @ h + x)
            return h, sg.sum(h * h)

        h, ys = sg.scan(step, h0, xs, checkpoint=checkpoint)
        return sg.sum(h) + sg.sum(ys)

    args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(7, 3))]
    plain, checkpointed = (
        sg.compile(sg.hessian(loss(k), [h0])[0][0], inputs=[W, h0, xs], backend="numpy")(*args)
        for k in (None, 3)
    )
    np.testing.assert_allclose(checkpointed, plain, rtol=0, atol=1e-12)


def test_scan_agrees_with_jax_lax_scan():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def make(xp, scan):
        def loss(W, c0, xs):
            def step(c, x):
                h, s = c
                h = xp.tanh(W @ h + x)
                return (h, s + xp.sum(h)), h * s

            (h, s), ys = scan(step, (c0, 0.0), xs, reverse=True)
            return xp.sum(h) + s + xp.sum(ys**2)

        return loss

    args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(6, 3))]
    ours = sg.value_and_grad(make(np, sg.scan), argnums=(0, 1, 2), backend="numpy")(*args)
    theirs = jax.value_and_grad(make(jnp, jax.lax.scan), argnums=(0, 1, 2))(*args)
    assert ours[0] == pytest.approx(float(theirs[0]), rel=1e-12)
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)

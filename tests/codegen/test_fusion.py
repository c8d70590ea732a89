"""Fused loops in the numba backend: the same numbers as the numpy backend, fewer arrays.

Every case compiles value-and-grad on both backends and compares them (the numpy
backend runs each op as its own numpy call, an independent implementation of the
same graph); the source checks pin down that the loops were actually fused.
"""

import numpy as np
import pytest

import symgrad as sg


def _both(loss, wrt, inputs, args, rtol=1e-12):
    fused = sg.value_and_grad(loss, wrt=wrt, inputs=inputs, backend="numba")
    plain = sg.value_and_grad(loss, wrt=wrt, inputs=inputs, backend="numpy")
    (v1, g1), (v2, g2) = fused(*args), plain(*args)
    np.testing.assert_allclose(v1, v2, rtol=rtol, atol=rtol)
    g1 = g1 if isinstance(g1, tuple) else (g1,)
    g2 = g2 if isinstance(g2, tuple) else (g2,)
    for a, b in zip(g1, g2):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    return fused


def _plain(source):
    """The module without the version of the kernel run in row blocks on threads (the same
    loops, cut into blocks: tests/codegen/test_threads.py)."""
    head, sep, rest = source.partition("# kernel() with its fused loops cut into row blocks")
    if not sep:
        return source
    return (
        head
        + rest[rest.index("@numba.njit(cache=True, nogil=True, error_model='numpy')\ndef kernel_checked") :]
    )


def _loop_count(source):
    return source.count("# fused loop")


rng = np.random.default_rng(7)


def test_rosenbrock_is_one_loop_with_its_gradient_written_once_per_element():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    for n in (1, 2, 7, 300):
        vg = _both(loss, x, [x], (rng.uniform(-1, 1, n),))
    src = _plain(vg.source)
    assert _loop_count(src) == 1
    # the only array the kernel allocates is the gradient itself, not zeroed: the two slices'
    # blocks cover it, and x[1:]'s contribution waits a row in a scalar (carry_scatters)
    assert src.count("_rt.empty(") == 1 and src.count("_rt.zeros(") == 0
    assert "d_x[i] = d_x_next + " in src and "d_x[i + 1] += " not in src


def test_sum_of_an_elementwise_chain_allocates_nothing():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(sg.exp(sg.sin(x)) * sg.tanh(x) ** 2 / (1 + x**2))
    vg = _both(loss, x, [x], (rng.normal(size=1000),))
    # one loop computes the value and the gradient; the gradient is the only array of n elements
    # (the loop runs on SIMD lanes in tiles: the sum's terms wait in one tile-long buffer)
    assert _loop_count(_plain(vg.source)) == 1
    assert _plain(vg.source).count("_rt.empty((dim_n,)") == 1 and "_rt.zeros(" not in _plain(vg.source)
    assert _plain(vg.source).count("_rt.empty(") == 2 and _plain(vg.source).count("_rt.empty((256,)") == 1


def test_broadcasting_operands_are_read_with_index_arithmetic():
    X = sg.tensor("X", ("n", "d"))
    b = sg.tensor("b", ("d",))
    c = sg.tensor("c", ("n", 1))
    s = sg.scalar("s")
    loss = sg.sum(sg.tanh(X * b + c) * s + sg.sigmoid(X - b) ** 2)
    args = (rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=(5, 1)), 0.7)
    vg = _both(loss, [X, b, c, s], [X, b, c, s], args)
    assert _loop_count(_plain(vg.source)) >= 1
    assert "[i, j]" in _plain(vg.source)


def test_rank_zero_graphs_stay_straight_line_code():
    x, y = sg.scalars("x y")
    vg = _both(x * y + sg.sin(x) * sg.exp(y), [x, y], [x, y], (0.7, -1.3))
    assert _loop_count(_plain(vg.source)) == 0


def test_float32_loops_keep_float32():
    x = sg.tensor("x", ("n",), dtype="float32")
    loss = sg.sum(sg.exp(-x * 0.5) * sg.cos(x) + 2 * x**2)
    data = rng.normal(size=50).astype(np.float32)
    fused = sg.value_and_grad(loss, wrt=x, backend="numba")
    plain = sg.value_and_grad(loss, wrt=x, backend="numpy")
    (v1, g1), (v2, g2) = fused(data), plain(data)
    assert np.asarray(v1).dtype == np.float32 and g1.dtype == np.float32
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)
    assert _loop_count(_plain(fused.source)) >= 1


def test_where_comparisons_and_relu_fuse():
    x = sg.tensor("x", ("n",))
    y = sg.tensor("y", ("n",))
    loss = sg.sum(sg.where(x > y, x * y, sg.relu(x) - y) + sg.maximum(x, 0.1 * y))
    args = (rng.normal(size=40), rng.normal(size=40))
    vg = _both(loss, [x, y], [x, y], args)
    assert _loop_count(_plain(vg.source)) >= 1


def test_values_used_outside_the_loop_are_stored_once():
    # the hidden layer feeds a matmul, so it is written to an array; the rest stays scalar
    X = sg.tensor("X", ("n", "d"))
    W = sg.tensor("W", ("d", "h"))
    v = sg.tensor("v", ("h",))
    loss = sg.mean(sg.softplus(sg.tanh(X @ W) @ v) ** 2)
    args = (rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), rng.normal(size=3))
    _both(loss, [W, v], [X, W, v], args)


def test_offsets_from_both_ends_and_two_dimensional_slices():
    M = sg.tensor("M", (6, 5))
    loss = sg.sum((M[1:, :-2] - M[:-1, 2:]) ** 2 * M[1:, 2:])
    _both(loss, M, [M], (rng.normal(size=(6, 5)),))
    v = sg.tensor("v", ("n",))
    loss = sg.sum(sg.sin(v[-3:]) * v[:3]) + sg.sum(v[2:-1] ** 3)
    _both(loss, v, [v], (rng.normal(size=8),))


def test_sum_with_keepdims_and_a_partial_sum_next_to_a_fused_loop():
    X = sg.tensor("X", ("n", "d"))
    loss = sg.sum(sg.sum(sg.exp(X) * X, axis=1) ** 2) + sg.sum(sg.square(X), keepdims=True)[0, 0]
    _both(loss, X, [X], (rng.normal(size=(4, 3)),))


def test_empty_arrays_give_zero_sums_and_empty_gradients():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(sg.exp(x) * x + x**2)
    vg = sg.value_and_grad(loss, wrt=x)
    value, grad = vg(np.zeros(0))
    assert value == 0.0 and grad.shape == (0,)


def test_disabling_fusion_gives_the_per_op_code(monkeypatch):
    monkeypatch.setenv("SYMGRAD_FUSION", "0")
    x = sg.tensor("x", ("n",))
    vg = _both(sg.sum(sg.exp(x) * x), x, [x], (rng.normal(size=10),))
    assert _loop_count(_plain(vg.source)) == 0


def test_partial_sums_accumulate_in_the_loop_without_the_summand_array():
    X = sg.tensor("X", ("n", "d"))
    b = sg.tensor("b", ("d",))
    c = sg.tensor("c", ("n", 1))
    loss = sg.sum(sg.sum(sg.exp(X * b) * c, axis=0) ** 2) + sg.sum(
        sg.sum(sg.tanh(X - c), axis=1, keepdims=True) ** 3
    )
    vg = _both(
        loss, [X, b, c], [X, b, c], (rng.normal(size=(7, 4)), rng.normal(size=4), rng.normal(size=(7, 1)))
    )
    assert "] += " in _plain(vg.source)
    x32 = sg.tensor("x", ("n", "d"), dtype="float32")
    loss32 = sg.sum(sg.sum(sg.square(x32) * 0.5, axis=1) * sg.sum(sg.sin(x32), axis=1))
    fused = sg.value_and_grad(loss32, wrt=x32)
    plain = sg.value_and_grad(loss32, wrt=x32, backend="numpy")
    data = rng.normal(size=(5, 3)).astype(np.float32)
    (v1, g1), (v2, g2) = fused(data), plain(data)
    assert g1.dtype == np.float32
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)


def test_nested_where_branches_are_computed_inside_their_ifs_with_the_same_numbers():
    x = sg.tensor("x", ("n",))
    y = sg.tensor("y", ("m", 1))
    inner = sg.where(x > 1, sg.log(x) * y, sg.sqrt(x))
    loss = sg.sum(sg.where(x > 0, inner, sg.exp(-x) * y)) + sg.sum(sg.where(x < 2, x * y, 0) ** 2)
    data = np.array([-1.5, -0.2, 0.0, 0.3, 1.0, 2.5, 4.0])
    vg = _both(loss, [x, y], [x, y], (data, rng.normal(size=(3, 1))))
    lines = _plain(vg.source).splitlines()
    depth = [len(l) - len(l.lstrip()) for l in lines]
    # the inner where is computed only inside the outer one's if: an if directly inside an if
    assert any(
        a.strip().startswith("if ") and b.strip().startswith("if ") and depth[k + 1] == depth[k] + 4
        for k, (a, b) in enumerate(zip(lines, lines[1:]))
    )
    assert not any(np.isnan(g).any() for g in vg(data, np.ones((3, 1)))[1])


def _row_loop(source):
    """The body of the one fused loop that accumulates a transposed product (the lines inside its
    ``for i``), checked to be a single loop over the rows."""
    lines = source.splitlines()
    heads = [k for k, l in enumerate(lines) if "# fused loop" in l and "transposed product" in l]
    assert len(heads) == 1, source
    # a loop in tiles (tiling.TILE) is one loop over the tiles, with passes over each tile's rows
    start = next(
        k
        for k in range(heads[0], len(lines))
        if lines[k].strip().startswith(("for i in range(", "for i0 in range("))
    )
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return "\n".join(body)


def _kernel_code(source):
    """The kernel's statements without comments."""
    kernel = source.split("def call")[0]
    return "\n".join(line.split("#")[0] for line in kernel.splitlines())


def _logreg_args(n, d):
    return (rng.normal(size=d) * 0.3, rng.normal(size=(n, d)), rng.choice([-1.0, 1.0], n))


def test_logistic_regression_reads_X_once_in_one_loop_over_the_rows():
    X = sg.tensor("X", ("n", "d"))
    y = sg.tensor("y", ("n",))
    w = sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0, -y * (X @ w))) + 1e-3 * sg.sum(w * w)
    for n, d in ((1, 1), (7, 3), (200, 16)):
        vg = _both(loss, [w], [w, X, y], _logreg_args(n, d))
    src = _plain(vg.source)
    # no BLAS product and no full-size copy of X: both products are inner loops of the row loop
    assert " @ " not in _kernel_code(src)
    assert "_rt.empty((dim_n, dim_d)" not in src
    body = _row_loop(src)
    assert "for j in range(dim_d):" in body and "X[i, j]" in body
    assert body.index("X[i, j] * w[j]") < body.rindex("[j] += ")
    # neither z nor the per-row coefficient is stored as an array
    assert "_rt.empty((dim_n,)" not in src


def test_least_squares_gradient_accumulates_the_transposed_product_in_the_row_loop():
    X = sg.tensor("X", ("n", "d"))
    t = sg.tensor("t", ("n",))
    w = sg.tensor("w", ("d",))
    loss = sg.sum((X @ w - t) ** 2)
    vg = _both(loss, [w, t], [w, X, t], (rng.normal(size=5), rng.normal(size=(40, 5)), rng.normal(size=40)))
    assert "[j] += " in _row_loop(_plain(vg.source)) and " @ " not in _kernel_code(_plain(vg.source))


def test_the_row_product_stores_z_when_it_is_an_output_too():
    X = sg.tensor("X", ("n", "d"))
    y = sg.tensor("y", ("n",))
    w = sg.tensor("w", ("d",))
    z = X @ w
    loss = sg.mean(sg.logaddexp(0, -y * z)) + 1e-3 * sg.sum(w * w)
    args = _logreg_args(30, 4)
    fused = sg.compile([loss, z, *sg.grad(loss, [w])], inputs=[w, X, y], backend="numba")
    plain = sg.compile([loss, z, *sg.grad(loss, [w])], inputs=[w, X, y], backend="numpy")
    for a, b in zip(fused(*args), plain(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused(*args)[1], args[1] @ args[0], rtol=1e-12)
    assert "[j] += " in _row_loop(_plain(fused.source))


def test_r_at_X_spelling_is_accumulated_in_the_row_loop():
    X = sg.tensor("X", ("n", "d"))
    w = sg.tensor("w", ("d",))
    v = sg.tensor("v", ("d",))
    r = sg.tanh(X @ w)
    loss = sg.sum((r @ X) * v)
    args = (rng.normal(size=4), rng.normal(size=(25, 4)), rng.normal(size=4))
    vg = _both(loss, [w, v], [w, X, v], args)
    assert "[j] += " in _row_loop(_plain(vg.source))


def test_row_products_with_fusion_disabled_give_the_same_numbers(monkeypatch):
    monkeypatch.setenv("SYMGRAD_FUSION", "0")
    X = sg.tensor("X", ("n", "d"))
    y = sg.tensor("y", ("n",))
    w = sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0, -y * (X @ w))) + 1e-3 * sg.sum(w * w)
    vg = _both(loss, [w], [w, X, y], _logreg_args(50, 6))
    assert _loop_count(_plain(vg.source)) == 0 and "X @ w" in _plain(vg.source)


def test_a_wide_concrete_matrix_keeps_blas():
    X = sg.tensor("X", (8, 300))
    t = sg.tensor("t", (8,))
    w = sg.tensor("w", (300,))
    vg = _both(
        sg.sum((X @ w - t) ** 2),
        [w],
        [w, X, t],
        (rng.normal(size=300), rng.normal(size=(8, 300)), rng.normal(size=8)),
    )
    assert "transposed product" not in _plain(vg.source) and " @ " in _kernel_code(_plain(vg.source))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_small_concrete_products_are_loops_with_blas_numbers(dtype):
    # matrix @ matrix, matrix @ vector, vector @ matrix, through transposes (non-contiguous
    # operands) and forward and backward; the numpy backend's BLAS products are the truth
    A, B = sg.tensor("A", (3, 4), dtype=dtype), sg.tensor("B", (4, 2), dtype=dtype)
    v, u = sg.tensor("v", (4,), dtype=dtype), sg.tensor("u", (3,), dtype=dtype)
    loss = (
        sg.sum(sg.tanh(A @ B))
        + sg.sum(sg.sin(A @ v))
        + sg.sum((u @ A) ** 2)
        + sg.sum(A.T @ sg.exp(u))
        + sg.sum(B.T @ A.T)
    )
    args = [rng.normal(size=s).astype(dtype) for s in ((3, 4), (4, 2), (4,), (3,))]
    vg = _both(loss, [A, B, v, u], [A, B, v, u], args, rtol=1e-12 if dtype == "float64" else 1e-5)
    src = _plain(vg.source)
    assert src.count("_rt.small_matmul(") >= 4
    code = [line.split("#")[0] for line in src.split("def call")[0].splitlines()]
    assert not [line for line in code if " @ " in line]


def test_products_past_the_small_size_or_of_symbolic_size_keep_blas():
    from symgrad.codegen.numba_backend import SMALL_PRODUCT

    side = int(round(SMALL_PRODUCT ** (1 / 3))) + 2  # side**3 multiply-adds > SMALL_PRODUCT
    A, B = sg.tensor("A", (side, side)), sg.tensor("B", (side, side))
    vg = _both(sg.sum(sg.tanh(A @ B)), [A, B], [A, B], [rng.normal(size=(side, side))] * 2)
    assert "small_matmul" not in _plain(vg.source) and " @ " in _plain(vg.source)
    C, D = sg.tensor("C", ("m", 3)), sg.tensor("D", (3, 2))
    vg = _both(sg.sum(sg.tanh(C @ D)), [C, D], [C, D], [rng.normal(size=(2, 3)), rng.normal(size=(3, 2))])
    assert "small_matmul" not in _plain(vg.source)


# ---------------------------------------------------------------- tiles (tiling.TILE)


def _tile_sizes():
    from symgrad.codegen.tiling import TILE

    return (1, TILE - 1, TILE, TILE + 1, 2 * TILE + 3)


def test_logistic_regression_runs_exp_and_log1p_in_vector_passes_over_tiles():
    X = sg.tensor("X", ("n", "d"))
    y = sg.tensor("y", ("n",))
    w = sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0, -y * (X @ w))) + 1e-3 * sg.sum(w * w)
    for n in _tile_sizes():
        vg = _both(loss, [w], [w, X, y], _logreg_args(n, 5), rtol=1e-13)
    body = _row_loop(_plain(vg.source))
    passes = [line.strip() for line in body.splitlines() if line.strip().startswith("for i in range(i0, i1")]
    # the dot product, then logaddexp and its sigmoid on SIMD lanes, then the transposed product
    # (the first and the last JAM rows at once: tests/codegen/test_rows_at_once.py)
    assert len(passes) == 3 and passes[1].endswith("# on SIMD lanes")
    simd = body.split("# on SIMD lanes")[1].split("for i in range(i0, i1")[0]
    assert "_rt.vlogaddexp(" in simd and "_rt.vsigmoid(" in simd and "for j" not in simd and "+=" not in simd
    # elsewhere, libm's (one element at a time, the faster)
    assert "_rt.logaddexp(" not in simd and "_rt.v" not in body.split("# on SIMD lanes")[0]
    # the running sum of the loss moved to the last pass; the rows are summed in order
    assert body.rindex("+= logaddexp") > body.rindex("for i in range(i0, i1)")


def test_a_sum_of_exp_and_log1p_is_tiled_and_adds_the_rows_in_order():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(sg.exp(x) * x + sg.log1p(x * x)) + sg.sum(sg.log(1 + x * x))
    for n in _tile_sizes():
        vg = _both(loss, x, [x], (rng.normal(size=n),), rtol=1e-13)
    assert "in tiles of" in _plain(vg.source) and "# on SIMD lanes" in _plain(vg.source)
    assert (
        "_rt.vexp(" in _plain(vg.source)
        and "_rt.vlog1p(" in _plain(vg.source)
        and "_rt.vlog(" in _plain(vg.source)
    )
    # the tiled sum adds x's terms in row order: exactly the untiled loop's sum
    a = rng.normal(size=1000)
    terms = np.exp(a) * a + np.log1p(a * a)
    total = 0.0
    for t in terms:
        total += t
    value, _ = vg(a)
    assert abs(value - (total + np.sum(np.log(1 + a * a)))) <= 1e-12 * abs(value)


def test_tiles_keep_float32_and_outputs_stored_for_after_the_loop():
    x = sg.tensor("x", ("n",), dtype="float32")
    e = sg.exp(x)
    loss = sg.sum(e * x)
    fused = sg.compile([loss, e, *sg.grad(loss, [x])], inputs=[x], backend="numba")
    plain = sg.compile([loss, e, *sg.grad(loss, [x])], inputs=[x], backend="numpy")
    for n in _tile_sizes():
        a = rng.normal(size=n).astype(np.float32)
        for got, want in zip(fused(a), plain(a)):
            assert np.asarray(got).dtype == np.asarray(want).dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    assert "in tiles of" in _plain(fused.source) and "dtype=np.float32)" in _plain(fused.source)


def test_a_loop_with_a_libm_call_is_not_tiled():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(sg.exp(x) * sg.gammaln(x))  # gammaln: libm's, with no arithmetic twin on lanes
    vg = _both(loss, x, [x], (rng.normal(size=300),))
    assert (
        "in tiles of" not in _plain(vg.source)
        and "np.exp(" in _plain(vg.source)
        and "_rt.v" not in _plain(vg.source)
    )

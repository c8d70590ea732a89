"""Long fused loops in row blocks on threads (codegen/threads.py): the same bits on 1 and 2
threads, the values numpy's, and sg.config(threads=...) / SYMGRAD_THREADS checked."""

import math
import re

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import emit, threads
from symgrad.errors import InputError

ROWS = threads.MIN_ROWS + 3 * threads.BLOCK + 17  # several blocks, the last one short


def _on(count, fn, *args):
    with sg.config(threads=count):
        return fn(*args)


def _same_bits(a, b):
    va, ga = a
    vb, gb = b
    assert np.float64(va).tobytes() == np.float64(vb).tobytes()
    for x, y in zip(ga, gb):
        assert x.tobytes() == y.tobytes()


def _stencil(shift, scale):
    """sum(scale (x[shift:] - x[:-shift]^2)^2 + (1 - x[:-shift])^2): its value and gradient, and a
    check of the same bits on 1 and 2 threads and of the numbers against numpy by hand."""
    x = sg.tensor("x", ("n",))
    lo, hi = x[:-shift], x[shift:]
    vg = sg.value_and_grad(sg.sum(scale * (hi - lo**2) ** 2 + (1 - lo) ** 2), wrt=[x])

    def check():
        xs = np.random.default_rng(0).uniform(-1, 1, ROWS + shift)
        one, two = _on(1, vg, xs), _on(2, vg, xs)
        _same_bits(one, two)
        a, b = xs[shift:] - xs[:-shift] ** 2, 1 - xs[:-shift]
        g = np.zeros_like(xs)
        g[shift:] += 2 * scale * a
        g[:-shift] += -4 * scale * a * xs[:-shift] - 2 * b
        assert math.isclose(one[0], math.fsum(scale * a * a + b * b), rel_tol=1e-12)
        np.testing.assert_allclose(one[1][0], g, rtol=1e-12, atol=1e-12)

    return vg, check


def test_slice_gradients_far_apart_same_bits_on_one_and_two_threads():
    # a running sum and scatters into the row and one 6 rows on (the slices' adjoints, too far
    # apart to be carried in scalars): blocks run even, then odd, and the partial sums add in
    # block order
    vg, check = _stencil(6, 1.0)
    assert "numba.prange" in vg.source and "def kernel_blocks(x, d_x):" in vg.source
    check()


def test_rosenbrock_gradient_carried_in_scalars_same_bits_on_one_and_two_threads():
    # rosen's slice gradients are written once per element, the next row's part carried in a
    # scalar from row to row (fusion.carry_scatters): each block computes it again from the row
    # before its first (the halo), and the last rows run once more for the element after the loop
    vg, check = _stencil(1, 100.0)
    assert "d_x_next_b" in vg.source and "def kernel_blocks(x, d_x):" in vg.source
    check()


def _carried_stencil():
    """sum((x[3:] - x[1:-2]^2)^2 + x[1:-2]): its slice gradients go to rows i + 1 and i + 3, the
    two rows on carried in scalars (a halo of two rows, the first store at i + 1)."""
    x = sg.tensor("x", ("n",))
    lo, hi = x[1:-2], x[3:]
    vg = sg.value_and_grad(sg.sum((hi - lo**2) ** 2 + lo), wrt=[x])

    def truth(xs):
        a = xs[3:] - xs[1:-2] ** 2
        g = np.zeros_like(xs)
        g[3:] += 2 * a
        g[1:-2] += -4 * a * xs[1:-2] + 1
        return math.fsum(np.concatenate([a * a, xs[1:-2]])), g

    return vg, truth


@pytest.mark.parametrize("rows_past", [-1, 0, 1, 17])
def test_carried_scalars_at_block_boundaries(monkeypatch, rows_past):
    # every call runs the blocks (MIN_ROWS 1): loops of one block, one block and a row, several
    # blocks and a short one; the bits on 1 and 2 threads the same, the numbers numpy's
    monkeypatch.setattr(threads, "MIN_ROWS", 1)
    monkeypatch.setattr(emit, "MIN_ROWS", 1)
    rosen, rosen_check = _stencil(1, 100.0)
    far, truth = _carried_stencil()
    assert "d_x_next_b" in rosen.source and "d_x_next2_b" in far.source
    assert "if dim_n >= 2:" in rosen.source and "if dim_n >= 4:" in far.source  # blocks from 1 row
    B = threads.BLOCK
    for blocks in (1, 3):
        rows = blocks * B + rows_past
        xs = np.random.default_rng(rows).uniform(-1.5, 1.5, rows + 3)
        # rosen: rows + 1 elements
        one, two = _on(1, rosen, xs[: rows + 1]), _on(2, rosen, xs[: rows + 1])
        _same_bits(one, two)
        r = xs[: rows + 1]
        a, b = r[1:] - r[:-1] ** 2, 1 - r[:-1]
        g = np.zeros_like(r)
        g[1:] += 200 * a
        g[:-1] += -400 * a * r[:-1] - 2 * b
        assert math.isclose(one[0], math.fsum(100 * a * a + b * b), rel_tol=1e-12)
        np.testing.assert_allclose(one[1][0], g, rtol=1e-12, atol=1e-12)
        # rows + 3 elements, the first never written
        one, two = _on(1, far, xs), _on(2, far, xs)
        _same_bits(one, two)
        value, grad = truth(xs)
        assert math.isclose(one[0], value, rel_tol=1e-12)
        np.testing.assert_allclose(one[1][0], grad, rtol=1e-12, atol=1e-12)
        assert one[1][0][0] == 0.0


def test_carried_gradient_matches_central_differences(monkeypatch):
    monkeypatch.setattr(threads, "MIN_ROWS", 1)  # the kernel of the test above
    monkeypatch.setattr(emit, "MIN_ROWS", 1)
    far, _ = _carried_stencil()
    n = 2 * threads.BLOCK + 20
    xs = np.random.default_rng(4).uniform(-1, 1, n)
    _, (grad,) = _on(2, far, xs)
    for k in (0, 1, 2, threads.BLOCK, threads.BLOCK + 1, threads.BLOCK + 3, n - 1):
        h = 1e-6
        up, down = xs.copy(), xs.copy()
        up[k] += h
        down[k] -= h
        # the two sums differ in one to three rows: their difference from those rows alone
        diff = _on(1, far, up)[0] - _on(1, far, down)[0]
        assert math.isclose(grad[k], diff / (2 * h), rel_tol=1e-4, abs_tol=1e-3)


def test_logistic_regression_same_bits_on_one_and_two_threads():
    # a tiled loop with a dot product per row and a transposed product X.T @ r: per-block partial
    # arrays, added in block order
    w, X, y = sg.tensor("w", ("d",)), sg.tensor("X", ("n", "d")), sg.tensor("y", ("n",))
    vg = sg.value_and_grad(sg.mean(sg.logaddexp(0.0, -y * (X @ w))) + 1e-3 * sg.dot(w, w), wrt=[w])
    rng = np.random.default_rng(1)
    args = (rng.normal(size=4) * 0.3, rng.normal(size=(ROWS, 4)), rng.choice([-1.0, 1.0], ROWS))
    one, two = _on(1, vg, *args), _on(2, vg, *args)
    _same_bits(one, two)
    wv, Xv, yv = args
    m = -yv * (Xv @ wv)
    assert math.isclose(one[0], np.mean(np.logaddexp(0.0, m)) + 1e-3 * (wv @ wv), rel_tol=1e-12)
    grad = Xv.T @ (-yv * (0.5 * (1 + np.tanh(0.5 * m))) / ROWS) + 2e-3 * wv
    np.testing.assert_allclose(one[1][0], grad, rtol=1e-10, atol=1e-14)


def test_column_sums_and_short_calls():
    # a sum over the row axis (a partial array per block) and a row-wise output; a call with few
    # rows runs the plain kernel and agrees with numpy too
    A = sg.tensor("A", ("n", 3))
    f = sg.compile([sg.sum(sg.exp(A) * A, axis=0), sg.tanh(A) * 2.0])
    assert "numba.prange" in f.source
    a = np.random.default_rng(2).normal(size=(ROWS, 3))
    one, two = _on(1, f, a), _on(2, f, a)
    for p, q in zip(one, two):
        assert p.tobytes() == q.tobytes()
    np.testing.assert_allclose(one[0], np.sum(np.exp(a) * a, axis=0), rtol=1e-12)
    np.testing.assert_allclose(one[1], np.tanh(a) * 2.0, rtol=1e-15)
    small = a[:100]
    np.testing.assert_allclose(_on(2, f, small)[0], np.sum(np.exp(small) * small, axis=0), rtol=1e-13)


def test_float32_sum_through_a_where_same_bits():
    # a float32 sum accumulates in float64 per block; the branches of a where are copied per block
    x = sg.tensor("x", ("n",), dtype="float32")
    vg = sg.value_and_grad(sg.sum(sg.where(x > 0, sg.log1p(x * x), sg.sin(x))), wrt=[x])
    a = np.random.default_rng(3).normal(size=ROWS).astype(np.float32)
    one, two = _on(1, vg, a), _on(2, vg, a)
    assert type(one[0]) is np.float32
    assert one[0].tobytes() == two[0].tobytes() and one[1][0].tobytes() == two[1][0].tobytes()
    a64 = a.astype(np.float64)
    assert math.isclose(one[0], math.fsum(np.where(a64 > 0, np.log1p(a64 * a64), np.sin(a64))), rel_tol=1e-6)
    grad = np.where(a64 > 0, 2 * a64 / (1 + a64 * a64), np.cos(a64))
    np.testing.assert_allclose(one[1][0], grad, rtol=1e-5, atol=1e-6)


def test_scalars_of_every_kind_run_the_row_blocks_built_for_the_parameters_types(monkeypatch):
    # an int or a 0-d array for a float parameter goes to the row blocks' machine code for float64,
    # as it goes to kernel_entry's (one compile; int64 arithmetic would wrap c**3 at c = 3e6),
    # and what numba's read refuses is an InputError naming the argument
    monkeypatch.setattr(threads, "MIN_ROWS", 1)
    monkeypatch.setattr(emit, "MIN_ROWS", 1)
    c, x = sg.scalar("c"), sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.tanh(x / c) ** 2) + c**3, wrt=[x, c], inputs=[x, c])
    vg.wait()
    xs = np.random.default_rng(4).uniform(-1.0, 1.0, 3 * threads.BLOCK + 5)
    for c0 in (3, 3_000_000):
        value, (grad, dc) = _on(2, vg, xs, float(c0))
        t = np.tanh(xs / c0)
        assert math.isclose(value, math.fsum(t * t) + float(c0) ** 3, rel_tol=1e-12)
        np.testing.assert_allclose(grad, 2 * t * (1 - t * t) / c0, rtol=1e-12)
        for kind in (c0, np.int64(c0), np.array(float(c0)), np.float32(c0), np.array(c0)):
            got = _on(2, vg, xs, kind)
            assert np.float64(got[0]).tobytes() == np.float64(value).tobytes(), repr(kind)
            assert got[1][0].tobytes() == grad.tobytes() and got[1][1] == dc, repr(kind)
    (signature,) = vg._entry.__globals__["kernel_blocks"].signatures
    assert str(signature[1]) == "float64"
    with pytest.raises(InputError, match=r"argument 'c': the int 10{36}\.\.\. is too large for float64"):
        vg(xs, 10**400)
    with pytest.raises(InputError, match=r"argument 'c' must be a scalar, got an array of shape \(1,\)"):
        vg(xs, np.array([3.0]))


def test_a_loop_nest_runs_in_blocks_of_about_block_elements_from_min_rows_elements():
    # a loop nest's rows go to the threads once rows x row length reaches MIN_ROWS, in blocks of
    # BLOCK // row length rows (at least one): a wide matrix with few rows runs on every thread.
    # A sum over the rows into an array (a partial array of a row's size per block) keeps blocks
    # of BLOCK rows: its own loop here, as the (m,) result cannot be read in the row loop
    A = sg.tensor("A", ("n", "m"))
    f = sg.compile([sg.sum(sg.exp(-A * A), axis=1), sg.sum(A * sg.tanh(A), axis=0), sg.sum(sg.sin(A))])
    blocks = f.source[f.source.index("def kernel_blocks(") :]
    assert f"block_rows = max(1, {threads.BLOCK} // max(dim_m, 1))" in blocks
    assert (
        f"in blocks of {threads.BLOCK} rows" in blocks
        and "out1_p = np.zeros((nblocks_2,) + out1.shape" in blocks
    )
    assert f"if dim_n * dim_m >= {threads.MIN_ROWS} or dim_n >= {threads.MIN_ROWS}:" in f.source
    B = sg.tensor("B", ("n", 128))
    g = sg.compile(sg.sum(sg.exp(-B * B), axis=1))
    assert f"in blocks of {threads.BLOCK // 128} rows" in g.source
    assert f"if dim_n * 128 >= {threads.MIN_ROWS}:" in g.source
    f.wait()
    blocked = f._entry.__globals__["kernel_blocks"]
    rng = np.random.default_rng(5)
    small = rng.normal(size=(threads.MIN_ROWS // 4096 - 1, 4096))
    f(small)
    assert not blocked.signatures  # fewer elements: the plain kernel ran
    for shape in [(threads.MIN_ROWS // 4096 + 3, 4096), (3, threads.BLOCK * 3 + 5), (9000, 17)]:
        a = rng.normal(size=shape)
        one, two = _on(1, f, a), _on(2, f, a)
        for p, q in zip(one, two):
            assert np.asarray(p).tobytes() == np.asarray(q).tobytes(), shape
        np.testing.assert_allclose(one[0], np.sum(np.exp(-a * a), axis=1), rtol=1e-12)
        np.testing.assert_allclose(one[1], np.sum(a * np.tanh(a), axis=0), rtol=1e-11, atol=1e-12)
        assert math.isclose(one[2], math.fsum(np.sin(a).ravel()), rel_tol=1e-11, abs_tol=1e-9)
    assert blocked.signatures


def test_a_kernel_broadcasting_whole_arrays_runs_on_one_thread():
    # softmax's exp / sum over rows, (n, m) by (n, 1), is a numpy statement between the loops
    # (cumsum reads the whole softmax): numba's parallel compile asserts the two sizes equal (it
    # does not see the 1), so a kernel holding one has no row blocks, however many elements its
    # loops have (with them, numba 0.65 raised AssertionError "Sizes of exp_arr, sum_exp do not
    # match" on the first call)
    S = sg.tensor("S", ("n", "m"))
    f = sg.compile(sg.cumsum(sg.softmax(S, axis=-1), axis=1))
    assert "kernel_blocks" not in f.source
    s = np.random.default_rng(7).normal(size=(600, 300))
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(_on(2, f, s), np.cumsum(e / e.sum(axis=-1, keepdims=True), axis=1), rtol=1e-12)


def test_a_kernel_multiplying_matrices_cuts_its_loop_nests_by_rows_and_arithmetic_nests_too():
    # a kernel holding a matrix product (its time is BLAS's) and a loop nest of arithmetic alone
    # (memory-bound) keep blocks of BLOCK rows, from MIN_ROWS rows
    A, W = sg.tensor("A", ("n", "m")), sg.tensor("W", ("m", "m"))
    products = sg.compile(sg.sum(sg.tanh(A @ W), axis=1))
    arithmetic = sg.compile(sg.sum(A * A + 2.0 * A, axis=1))
    for f in (products, arithmetic):
        assert "block_rows" not in f.source and f"if dim_n >= {threads.MIN_ROWS}:" in f.source
    a, w = np.random.default_rng(8).normal(size=(3000, 60)), np.eye(60) * 0.5
    np.testing.assert_allclose(_on(2, products, a, w), np.sum(np.tanh(a @ w), axis=1), rtol=1e-12)
    np.testing.assert_allclose(_on(2, arithmetic, a), np.sum(a * a + 2.0 * a, axis=1), rtol=1e-12)


def test_a_loop_nest_adding_into_the_next_rows_keeps_blocks_of_block_rows():
    # the gradient of a slice along the rows adds into the next block's first rows: its blocks run
    # even, then odd, each BLOCK rows (a block of fewer rows than the slice's step would not do)
    A = sg.tensor("A", ("n", "m"))
    vg = sg.value_and_grad(sg.sum(sg.sin(A[2:] - A[:-2]) ** 2), wrt=[A])
    assert f"in blocks of {threads.BLOCK} rows" in vg.source and "even blocks, then odd ones" in vg.source
    assert "block_rows" not in vg.source and f"if dim_n >= {threads.MIN_ROWS + 2}:" in vg.source
    a = np.random.default_rng(6).normal(size=(ROWS, 3))
    one, two = _on(1, vg, a), _on(2, vg, a)
    _same_bits(one, two)
    d = a[2:] - a[:-2]
    g = np.zeros_like(a)
    g[2:] += 2 * np.sin(d) * np.cos(d)
    g[:-2] -= 2 * np.sin(d) * np.cos(d)
    assert math.isclose(one[0], math.fsum((np.sin(d) ** 2).ravel()), rel_tol=1e-12)
    np.testing.assert_allclose(one[1][0], g, rtol=1e-12, atol=1e-12)


def test_numpy_backend_ignores_threads():
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(sg.sin(x)), backend="numpy")
    assert "prange" not in f.source
    xs = np.linspace(0, 1, 1000)
    assert math.isclose(_on(2, f, xs), math.fsum(np.sin(xs)), rel_tol=1e-12)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", [2]])
def test_config_threads_refuses_what_is_not_a_count(bad):
    with pytest.raises(
        InputError,
        match=re.escape("symgrad.config: threads must be an int >= 1") + ".*got " + re.escape(repr(bad)),
    ):
        sg.config(threads=bad)


def test_config_threads_sets_and_restores():
    before = sg.config()["threads"]
    with sg.config(threads=1) as now:
        assert now["threads"] == 1
    assert sg.config()["threads"] == before


@pytest.mark.parametrize("text", ["0", "two", "-1", "1.5"])
def test_environment_threads_refused_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv("SYMGRAD_THREADS", text)
    with pytest.raises(
        InputError, match=re.escape(f"environment variable SYMGRAD_THREADS={text!r}: threads must be")
    ):
        sg.config()


def test_environment_threads_read(monkeypatch):
    monkeypatch.setenv("SYMGRAD_THREADS", " 2 ")
    assert sg.config()["threads"] == 2
    with sg.config(threads=1) as now:  # config wins over the environment
        assert now["threads"] == 1

"""A fused row loop's passes with inner loops (a row's dot product ``X[i, :] @ w``, a transposed
product's ``g[j] += r_i * X[i, j]``) run several rows at once (codegen/tiling.py's ``jam``): the
same sums in the same order as one row at a time, so the same bits, on one thread and on two."""

import re

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import threads
from symgrad.codegen.tiling import JAM, JAM_WIDTH, TILE

rng = np.random.default_rng(11)


def _least_squares_in_order(w, X, t):
    """sum((X @ w - t)^2) and its gradient, each sum added term by term in index order: the
    order one row at a time gives (a row's dot product over j, the gradient's over the rows)."""
    n, d = X.shape
    value = 0.0
    grad = [0.0] * d
    for i in range(n):
        z = 0.0
        for j in range(d):
            z += X[i, j] * w[j]
        r = z - t[i]
        value += r * r
        for j in range(d):
            grad[j] += (r * 2.0) * X[i, j]
    return value, np.array(grad)


@pytest.mark.parametrize("d", [1, 3, JAM, 7])
def test_least_squares_rows_at_once_have_the_bits_of_the_sums_in_row_order(d):
    X, t, w = sg.tensor("X", ("n", "d")), sg.tensor("t", ("n",)), sg.tensor("w", ("d",))
    vg = sg.value_and_grad(sg.sum((X @ w - t) ** 2), wrt=[w], inputs=[w, X, t], backend="numba")
    # tiles of a multiple of JAM rows and not, a last tile of 1..JAM-1 rows and of none
    for n in (1, JAM - 1, JAM, JAM + 1, TILE - 1, TILE + JAM + 2, 2 * TILE + 1):
        args = (rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=n))
        value, (grad,) = vg(*args)
        want_value, want_grad = _least_squares_in_order(*args)
        assert np.float64(value).tobytes() == np.float64(want_value).tobytes(), (n, d)
        assert grad.tobytes() == want_grad.tobytes(), (n, d)
    src = vg.source.split("def kernel_blocks")[0]
    assert f"# {JAM} rows at once" in src and "# the tile's last rows" in src
    assert "X[i + 1, j] * w[j]" in src  # the rows' dot products side by side in one loop over j
    # the rows' updates of an element of the gradient in one statement, added in row order
    chained = re.search(r"(\w+)\[j\] = \1\[j\] \+ (.*)  #", src)
    assert chained and re.findall(r"\* X\[i(?: \+ (\d+))?, j\]", chained.group(2)) == [""] + [
        str(k) for k in range(1, JAM)
    ]


def test_logistic_regression_rows_at_once_match_numpy_and_central_differences():
    X, y, w = sg.tensor("X", ("n", "d")), sg.tensor("y", ("n",)), sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0.0, -y * (X @ w))) + 1e-3 * sg.dot(w, w)
    for backend in ("numba", "numpy"):
        vg = sg.value_and_grad(loss, wrt=[w], inputs=[w, X, y], backend=backend)
        for n, d in ((3, 2), (TILE + 5, 16), (1001, 5)):
            wv, Xv, yv = rng.normal(size=d) * 0.3, rng.normal(size=(n, d)), rng.choice([-1.0, 1.0], n)
            m = -yv * (Xv @ wv)
            value, (grad,) = vg(wv, Xv, yv)
            assert abs(value - (np.mean(np.logaddexp(0.0, m)) + 1e-3 * wv @ wv)) <= 1e-12 * abs(value)
            want = Xv.T @ (-yv / (1 + np.exp(-m)) / n) + 2e-3 * wv
            np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-15)
            assert sg.check_grad(vg, wv, Xv, yv) < 1e-7
    # a tile's dot products and its transposed product's updates run JAM rows at once when d is at
    # most JAM_WIDTH (d is a symbol: a test when the kernel runs)
    assert vg.source.count(f"# {JAM} rows at once") == 0  # (numpy backend: no loops)
    fused = sg.value_and_grad(loss, wrt=[w], inputs=[w, X, y], backend="numba").source.split(
        "def kernel_blocks"
    )[0]
    assert fused.count(f"# {JAM} rows at once (rows of at most {JAM_WIDTH})") == 2
    assert f"i1 - {JAM - 1} if dim_d <= {JAM_WIDTH} else i0" in fused


def test_two_products_of_different_widths_in_one_loop():
    # tanh(X @ w) * (Z @ v): two dot products (d and e long) and two transposed products per row
    X, Z = sg.tensor("X", ("n", "d")), sg.tensor("Z", ("n", "e"))
    w, v = sg.tensor("w", ("d",)), sg.tensor("v", ("e",))
    loss = sg.sum(sg.tanh(X @ w) * (Z @ v))
    n, d, e = 2 * TILE + 7, 5, 3
    args = (rng.normal(size=d) * 0.5, rng.normal(size=e), rng.normal(size=(n, d)), rng.normal(size=(n, e)))
    for backend in ("numba", "numpy"):
        vg = sg.value_and_grad(loss, wrt=[w, v], inputs=[w, v, X, Z], backend=backend)
        value, (gw, gv) = vg(*args)
        wv, vv, Xv, Zv = args
        a, b = np.tanh(Xv @ wv), Zv @ vv
        assert abs(value - np.sum(a * b)) <= 1e-12 * np.sum(np.abs(a * b))
        np.testing.assert_allclose(gw, Xv.T @ ((1 - a * a) * b), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(gv, Zv.T @ a, rtol=1e-12, atol=1e-13)
        assert sg.check_grad(vg, *args) < 1e-7
    src = vg.source if backend == "numba" else sg.value_and_grad(loss, wrt=[w, v], inputs=[w, v, X, Z]).source
    src = src.split("def kernel_blocks")[0]
    assert "for j in range(dim_d):" in src and "for j in range(dim_e):" in src
    assert "Z[i + 1, j] * v[j]" in src and "X[i + 1, j] * w[j]" in src


def test_rows_at_once_same_bits_on_one_and_two_threads():
    # several row blocks, the last one's last tile 1 row past a multiple of JAM
    rows = threads.MIN_ROWS + 3 * threads.BLOCK + 4 * JAM + 1
    X, t, w = sg.tensor("X", ("n", "d")), sg.tensor("t", ("n",)), sg.tensor("w", ("d",))
    vg = sg.value_and_grad(sg.sum(sg.tanh(X @ w - t) ** 2), wrt=[w], inputs=[w, X, t])
    args = (rng.normal(size=6) * 0.3, rng.normal(size=(rows, 6)), rng.normal(size=rows))
    with sg.config(threads=1):
        one = vg(*args)
    with sg.config(threads=2):
        two = vg(*args)
    assert np.float64(one[0]).tobytes() == np.float64(two[0]).tobytes()
    assert one[1][0].tobytes() == two[1][0].tobytes()
    r = np.tanh(args[1] @ args[0] - args[2])
    assert abs(one[0] - np.sum(r * r)) <= 1e-12 * one[0]
    np.testing.assert_allclose(one[1][0], args[1].T @ (2 * r * (1 - r * r)), rtol=1e-12, atol=1e-12)
    blocked = vg.source.split("def kernel_blocks")[1]
    assert "numba.prange" in blocked and f"# {JAM} rows at once" in blocked


@pytest.mark.parametrize("d", [JAM_WIDTH, JAM_WIDTH + 1])
def test_rows_at_once_only_up_to_the_width(d):
    # rows of a symbolic length at most JAM_WIDTH run JAM at once, longer ones one at a time (a
    # test when the kernel runs); a concrete length past it is never jammed
    X, t, w = sg.tensor("X", ("n", "d")), sg.tensor("t", ("n",)), sg.tensor("w", ("d",))
    vg = sg.value_and_grad(sg.sum(sg.tanh(X @ w - t) ** 2), wrt=[w], inputs=[w, X, t])
    n = TILE + 2 * JAM + 3
    args = (rng.normal(size=d) * 0.2, rng.normal(size=(n, d)), rng.normal(size=n))
    value, (grad,) = vg(*args)
    r = np.tanh(args[1] @ args[0] - args[2])
    assert abs(value - np.sum(r * r)) <= 1e-12 * value
    np.testing.assert_allclose(grad, args[1].T @ (2 * r * (1 - r * r)), rtol=1e-12, atol=1e-13)
    Xc, wc = sg.tensor("X", ("n", d)), sg.tensor("w", (d,))
    concrete = sg.value_and_grad(sg.sum(sg.tanh(Xc @ wc - t) ** 2), wrt=[wc], inputs=[wc, Xc, t])
    jammed = f"# {JAM} rows at once" in concrete.source
    assert jammed == (d <= JAM_WIDTH) and "if dim_d <=" not in concrete.source
    value_c, (grad_c,) = concrete(*args)
    assert np.float64(value_c).tobytes() == np.float64(value).tobytes() and grad_c.tobytes() == grad.tobytes()

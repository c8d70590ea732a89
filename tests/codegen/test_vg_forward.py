"""The backward pass of a fused loop does not redo or re-read what the forward pass did.

Each case checks the value and gradient against numpy written by hand and against central
differences, then a property of the generated source that says the work is done once (not
timing): how often an array is written, zeroed or read.
"""

import numpy as np

import symgrad as sg


def _central(f, x, h=1e-6):
    g = np.empty_like(x)
    for k in range(x.size):
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        g[k] = (f(up) - f(down)) / (2 * h)
    return g


def _kernel(source):
    """The machine code's function, and the entry (which allocates the arrays ``kernel_into`` fills)."""
    head = "def kernel_into(" if "def kernel_into(" in source else "def kernel("
    start = source.index(head)
    return source[start : source.index("\n\n\n", start)] + source[source.index("def call(") :]


def _check(vg, f, grad, x):
    value, g = vg(x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, grad(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, _central(f, x), rtol=1e-6, atol=1e-6)


def test_a_stencil_gradient_is_written_once_per_element_without_zeroing():
    # three shifted slices of x: element i of the gradient gets x[2:]'s part from row i - 2,
    # x[1:-1]'s from row i - 1 and x[:-2]'s from row i; the first two wait in scalars
    x = sg.tensor("x", ("n",))
    loss = sg.sum((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2 + x[1:-1] ** 3 * x[:-2])

    def f(x):
        return np.sum((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2 + x[1:-1] ** 3 * x[:-2])

    def grad(x):
        r = 2 * (x[2:] - 2 * x[1:-1] + x[:-2])
        g = np.zeros_like(x)
        g[2:] += r
        g[1:-1] += -2 * r + 3 * x[1:-1] ** 2 * x[:-2]
        g[:-2] += r + x[1:-1] ** 3
        return g

    vg = sg.value_and_grad(loss, wrt=x)
    rng = np.random.default_rng(3)
    for n in (2, 3, 4, 57):
        _check(vg, f, grad, rng.uniform(-1, 1, n))
    kernel = _kernel(vg.source)
    assert kernel.count("for i in range(") == 1  # one loop over the rows
    # the gradient: allocated without zeros, each element stored once (never `+=`, never read)
    assert "zeros(" not in kernel and kernel.count("_empty(dim_n)") == 1
    assert "d_x[i] = " in kernel and "d_x[i" + " + 1] +=" not in kernel and "d_x[i + 2] +=" not in kernel
    assert kernel.count("d_x[") == 3  # in the loop, and the two elements still waiting after it


def test_elements_no_slice_reaches_stay_zero():
    # x[1:-1] and x[2:]: element 0 is reached by no block, so the gradient starts zeroed
    x = sg.tensor("x", ("n",))
    loss = sg.sum(x[1:-1] ** 2 * x[2:])

    def f(x):
        return np.sum(x[1:-1] ** 2 * x[2:])

    def grad(x):
        g = np.zeros_like(x)
        g[1:-1] += 2 * x[1:-1] * x[2:]
        g[2:] += x[1:-1] ** 2
        return g

    vg = sg.value_and_grad(loss, wrt=x)
    rng = np.random.default_rng(4)
    for n in (2, 3, 40):
        x0 = rng.uniform(-1, 1, n)
        _check(vg, f, grad, x0)
        assert vg(x0)[1][0] == 0.0 and vg(x0)[1].shape == (n,)
    kernel = _kernel(vg.source)
    # stored once per element (no `+=`), into arrays zeroed first: element 0 is never stored
    assert "zeros((dim_n,)" in kernel and "+= " not in kernel.replace("value += ", "")


def test_the_adjoint_of_a_transposed_operand_is_computed_in_its_own_order():
    # k enters as k.T (attention's q @ k.T): its adjoint is (q.T @ g).T, computed as g.T @ q,
    # not computed and then copied out of its transpose
    q, k = sg.tensor("q", ("h", "n", "d")), sg.tensor("k", ("h", "m", "d"))
    s = q @ sg.transpose(k, (0, 2, 1))
    loss = sg.sum(sg.tanh(s) * s)

    def f(q, k):
        s = q @ np.transpose(k, (0, 2, 1))
        return np.sum(np.tanh(s) * s)

    def grad(q, k):
        s = q @ np.transpose(k, (0, 2, 1))
        t = np.tanh(s)
        g = t + s * (1 - t * t)
        return g @ k, np.transpose(g, (0, 2, 1)) @ q

    vg = sg.value_and_grad(loss, wrt=[q, k])
    rng = np.random.default_rng(5)
    qv, kv = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4, 3))
    value, (dq, dk) = vg(qv, kv)
    np.testing.assert_allclose(value, f(qv, kv), rtol=1e-12)
    want_q, want_k = grad(qv, kv)
    np.testing.assert_allclose(dq, want_q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dk, want_k, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        dk.ravel(), _central(lambda x: f(qv, x.reshape(kv.shape)), kv.ravel()), rtol=1e-6, atol=1e-6
    )
    assert dk.flags.c_contiguous and dk.shape == kv.shape
    kernel = _kernel(vg.source)
    assert ".copy()" not in kernel  # no output copied out of a transposed view
    assert kernel.count("_rt.bmm(") == 3  # s, then d_q and d_k: no product twice


def test_a_2d_transposed_operand_gets_its_adjoint_from_one_product():
    a, b = sg.tensor("a", ("n", "d")), sg.tensor("b", ("m", "d"))
    loss = sg.sum(sg.sin(a @ b.T))

    def grad_b(a, b):
        return (np.cos(a @ b.T)).T @ a

    vg = sg.value_and_grad(loss, wrt=[b], inputs=[a, b])
    rng = np.random.default_rng(6)
    av, bv = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    value, (db,) = vg(av, bv)
    np.testing.assert_allclose(value, np.sum(np.sin(av @ bv.T)), rtol=1e-12)
    np.testing.assert_allclose(db, grad_b(av, bv), rtol=1e-12, atol=1e-12)
    assert ".copy()" not in _kernel(vg.source)

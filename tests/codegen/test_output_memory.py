"""How a numba kernel allocates the arrays it returns: a kernel output computed by one
elementwise op is a loop writing an array the kernel allocates through the runtime
(``_rt.empty``), which asks for huge pages when the array is large, as numpy's allocator does;
checked against numpy (values), the page faults of a call (``ru_minflt``) and the source."""

import resource

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import memory_kernels

RNG = np.random.default_rng(22)


def _huge_pages_on_advice():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as fh:
            setting = fh.read()
    except OSError:
        return False
    return "[always]" in setting or "[madvise]" in setting


def _faults(fn, *args):
    fn(*args)  # warm: the compile, the first call's own allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = fn(*args)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, out


def per_example_outer(x, d):
    """The shape of a per-example weight gradient: x_i outer d_i for each example i."""
    return x[:, :, None] * d[:, None, :]


def test_a_returned_elementwise_product_is_a_loop_into_a_runtime_allocation():
    x, d = sg.tensor("x", ("n", "p")), sg.tensor("d", ("n", "q"))
    f = sg.compile(per_example_outer(x, d), inputs=[x, d])
    src = f.source
    # the output is written by a loop into the kernel's own allocation, not numba's array expression
    assert "out_2 = _rt.empty((dim_n, dim_p, dim_q), dtype=np.float64)" in src
    assert "fused loop 1 (forward): 1 elementwise op" in src
    X, D = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 5))
    np.testing.assert_array_equal(f(X, D), per_example_outer(X, D))


@pytest.mark.skipif(not _huge_pages_on_advice(), reason="the kernel gives no huge pages on advice here")
def test_a_large_output_faults_per_huge_page_not_per_4k_page():
    x, d = sg.tensor("x", ("n", "p")), sg.tensor("d", ("n", "q"))
    f = sg.compile(per_example_outer(x, d), inputs=[x, d])
    X, D = RNG.normal(size=(48, 512)), RNG.normal(size=(48, 256))  # 48 MiB out: a fresh mmap per call
    faults, out = _faults(f, X, D)
    np.testing.assert_array_equal(out, per_example_outer(X, D))
    small_pages = out.nbytes // 4096  # 12288: what numba's own allocation costs
    # huge pages cover the 2 MiB-aligned part; the ends up to the next 2 MiB boundary are small pages
    assert faults < small_pages // 4, faults


def test_runtime_empty_and_zeros_agree_with_numpy_at_every_size():
    for shape in [(0,), (3,), (2, 3), (1 << 22,)]:  # the last is 32 MiB: advised
        a = memory_kernels.empty(shape, np.float64)
        z = memory_kernels.zeros(shape, np.float64)
        assert a.shape == z.shape == shape and a.dtype == z.dtype == np.float64
        assert a.flags.c_contiguous and z.flags.c_contiguous
        np.testing.assert_array_equal(z, np.zeros(shape))
        a[...] = 1.5
        assert np.all(a == 1.5)
    b = memory_kernels.zeros((4, 2), np.bool_)
    assert b.dtype == np.bool_ and not b.any()


@pytest.mark.slow
def test_mlp_per_example_gradients_on_numba_match_numpy_by_hand():
    rng = np.random.default_rng(3)
    W1, b1 = rng.normal(size=(20, 8)) * 0.3, rng.normal(size=8)
    W2, b2 = rng.normal(size=(8, 4)) * 0.3, rng.normal(size=4)
    X, Y = rng.normal(size=(6, 20)), np.eye(4)[rng.integers(0, 4, 6)]

    def loss(W1, b1, W2, b2, x, t):
        h = np.tanh(x @ W1 + b1)
        s = h @ W2 + b2
        m = np.max(s)
        return -np.sum(t * (s - m - np.log(np.sum(np.exp(s - m)))))

    grads = sg.vmap(sg.grad(loss, argnums=(0, 1, 2, 3)), in_axes=(None, None, None, None, 0, 0))
    got = grads(W1, b1, W2, b2, X, Y)
    h = np.tanh(X @ W1 + b1)
    s = h @ W2 + b2
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ds = p * Y.sum(axis=1, keepdims=True) - Y
    dh = ds @ W2.T * (1 - h * h)
    want = (X[:, :, None] * dh[:, None, :], dh, h[:, :, None] * ds[:, None, :], ds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    # the (6, 20, 8) weight gradient: a loop writing the kernel's allocation
    assert (
        "out_0 = _rt.empty((dim_x_0, dim_W1_0, dim_W1_1)" in grads.compiled_for(W1, b1, W2, b2, X, Y).source
    )


def test_cached_kernels_are_named_by_the_helper_modules_compiled_into_them_too():
    # a kernel's machine code holds memory_kernels' (and special's, ...) compiled code: a change
    # to any of them must give every cached module another name, not only numba_runtime.py's
    from symgrad.codegen import runtime, special

    sources = runtime._helper_sources()
    for module in (memory_kernels, special):
        with open(module.__file__, "rb") as fh:
            assert fh.read() in sources


def test_the_heap_thresholds_are_fixed_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    # (the tests run without MALLOC_*_ settings of their own)
    assert memory_kernels.HEAP_KEPT is True


@pytest.mark.skipif(not memory_kernels.HEAP_KEPT, reason="the heap's thresholds are glibc's here")
def test_a_reverse_pass_s_temporaries_of_some_mib_do_not_fault_again_on_each_call():
    # bilinear regression: X @ W, the residual's product with Y and both products back, each
    # a 4096 x 64 float64 array (2 MiB) freed together when the kernel returns; with glibc's
    # dynamic thresholds the heap gave them back every call (512 faults a 2 MiB array)
    W, X = sg.tensor("W", ("d", "d")), sg.tensor("X", ("n", "d"))
    Y, t = sg.tensor("Y", ("n", "d")), sg.tensor("t", ("n",))
    vg = sg.value_and_grad(
        0.5 * sg.mean((sg.sum((X @ W) * Y, axis=1) - t) ** 2), wrt=[W, X], inputs=[W, X, Y, t]
    )
    args = (
        RNG.normal(size=(64, 64)) / 8,
        RNG.normal(size=(4096, 64)),
        RNG.normal(size=(4096, 64)),
        RNG.normal(size=4096),
    )
    vg(*args)
    faults, (value, (dW, dX)) = _faults(vg, *args)
    Wv, Xv, Yv, tv = args
    r = np.sum((Xv @ Wv) * Yv, axis=1) - tv
    g = (r / r.shape[0])[:, None] * Yv
    np.testing.assert_allclose(value, 0.5 * np.mean(r * r), rtol=1e-12)
    np.testing.assert_allclose(dW, Xv.T @ g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dX, g @ Wv.T, rtol=1e-10, atol=1e-14)
    assert faults < 100, faults  # the two returned 2 MiB gradients: under 1024 even if fresh

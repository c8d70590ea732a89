"""What makes builds fast, checked by what happened, never by how long it took: a second process
loads a kernel's machine code without numba's start-up (its registries, SciPy), an array written
into a slice goes through a helper numba caches on disk (not numba's slice assignment, which
compiles a string-formatting error message into every kernel), and that helper is loaded from
numba's cache by a later process instead of compiled again."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# a loss with slices (the gradient of mu[None, :] writes an array into a slice of zeros), built in
# a fresh process;
# prints what numba compiled and what the process imported
SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from numba.core import base, event
    import symgrad as sg
    from symgrad.codegen import numba_cache, numba_runtime

    refreshes = []  # numba's refresh of its target context: every registry it has, imported
    refresh = base.BaseContext.refresh
    base.BaseContext.refresh = lambda self: refreshes.append(1) or refresh(self)

    def loss(mu, x):
        return np.sum(np.log(np.sum(np.exp(-((x[:, None] - mu[None, :]) ** 2)), axis=1))) + SCALE * mu[0]

    mu = np.array([0.1, -0.2, 0.4])
    x = np.linspace(-1.0, 1.0, 5)
    with event.install_recorder("numba:compile") as rec:
        vg = sg.value_and_grad(loss, argnums=0)
        value, grad = vg(mu, x)
        vg.wait()  # numba's compile (in the background by default) is what this test records
    compiled = [getattr(e.data["dispatcher"], "py_func", None) for _, e in rec.buffer if e.is_start]
    put = numba_runtime.put.stats
    print(json.dumps({
        "value": float(value), "grad": grad.tolist(), "cache": vg.compiles[0]["cache"],
        "source": vg.source,
        "compiled": [f"{f.__module__}.{f.__qualname__}" for f in compiled if f is not None],
        "fast_loads": numba_cache.LOADS[0],
        "refreshes": len(refreshes),
        "put_hits": sum(put.cache_hits.values()), "put_misses": sum(put.cache_misses.values()),
    }))
""")


def _run(cache, scale):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache), SYMGRAD_VERBOSE="0")
    script = SCRIPT.replace("SCALE", repr(scale))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _truth(mu, x, scale):
    # by hand: f = sum_i log sum_j exp(-(x_i - mu_j)^2) + scale mu_0;
    # df/dmu_j = sum_i p_ij 2 (x_i - mu_j) + scale [j = 0], p_ij the softmax over j
    d = x[:, None] - mu[None, :]
    e = np.exp(-(d**2))
    p = e / e.sum(axis=1, keepdims=True)
    grad = (p * 2 * d).sum(axis=0)
    grad[0] += scale
    return np.sum(np.log(e.sum(axis=1))) + scale * mu[0], grad


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("build-levers")
    # a first program fills numba's cache of symgrad's helpers (empty in a fresh checkout); then
    # another one twice (cold, warm), then a third using the same helpers
    _run(cache, 0.125)
    return _run(cache, 0.5), _run(cache, 0.5), _run(cache, 0.25)


def test_every_process_computes_the_true_value_and_gradient(runs):
    mu, x = np.array([0.1, -0.2, 0.4]), np.linspace(-1.0, 1.0, 5)
    for run, scale in zip(runs, (0.5, 0.5, 0.25)):
        value, grad = _truth(mu, x, scale)
        assert np.isclose(run["value"], value, rtol=1e-13)
        np.testing.assert_allclose(run["grad"], grad, rtol=1e-12, atol=1e-14)


def test_a_slice_gradient_does_not_compile_numbas_slice_assignment_message(runs):
    cold = runs[0]
    assert cold["cache"] == "compiled, saved to cache"
    assert "_rt.put(" in cold["source"]  # the gradient of mu[None, :] writes an array into a slice
    assert any(name.endswith((".kernel", ".kernel_into")) for name in cold["compiled"])  # it did compile here
    assert not [name for name in cold["compiled"] if "raise_with_shape_context" in name]
    # nor any other formatted message of numba's (np.sum(x, axis=k) has one: numba_runtime.sum_middle)
    assert not [name for name in cold["compiled"] if "unicode" in name or "str_generic" in name]


def test_a_second_process_loads_the_kernel_without_numbas_start_up(runs):
    warm = runs[1]
    assert warm["cache"] == "machine code loaded from cache"
    assert warm["fast_loads"] == 1
    assert warm["compiled"] == []
    # numba never installed its registries (its numpy support imports scipy.linalg)
    assert warm["refreshes"] == 0
    assert runs[0]["refreshes"] > 0  # as compiling does


def test_the_slice_helper_is_loaded_from_numbas_cache_by_a_later_kernel(runs):
    other = runs[2]
    assert other["cache"] == "compiled, saved to cache"  # a new kernel (another constant)
    assert other["put_misses"] == 0 and other["put_hits"] >= 1
    assert not [name for name in other["compiled"] if name.endswith(".put")]


def test_sums_along_some_axes_agree_with_numpy_and_go_through_the_cached_helper():
    import symgrad as sg

    def sums(a, m):
        return (
            np.sum(a, axis=1),
            np.sum(a, axis=(0, 2), keepdims=True),
            np.sum(a, axis=2),
            np.sum(m, axis=0),
            np.sum(m, axis=1, keepdims=True),
        )

    rng = np.random.default_rng(3)
    a, m = rng.normal(size=(3, 4, 5)), rng.integers(-4, 5, size=(6, 7))
    f = sg.compile(sums)
    got = f(a, m)
    assert f.source.count("_rt.sum_middle(") >= 4 and "np.sum(a, axis" not in f.source
    for g, w in zip(got, sums(a, m)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)


def test_dims_equal_decides_polynomial_dims_without_simplify(monkeypatch):
    import itertools

    import sympy

    from symgrad import graph

    n, m = sympy.symbols("n m", positive=True, integer=True)
    pairs = [
        (n, 2),
        (2, n),
        (n, n),
        (n * (m + 1), n * m + n),
        (n - 1 + 1, n),
        (n * m, m * n + 1),
        (3, 3),
        (n**2, n),
    ]

    def truth(a, b):  # equal at every size tried
        return all(
            int(sympy.sympify(a).subs({n: i, m: j})) == int(sympy.sympify(b).subs({n: i, m: j}))
            for i, j in itertools.product(range(1, 6), repeat=2)
        )

    want = [truth(a, b) for a, b in pairs]

    def no_simplify(*args, **kwargs):  # slow, and its first call imports sympy.physics
        raise AssertionError("simplify called")

    monkeypatch.setattr(sympy, "simplify", no_simplify)
    assert [graph.dims_equal(a, b) for a, b in pairs] == want

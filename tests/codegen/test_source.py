"""The Compiled object: .source is what was compiled, .inputs, .kernel from user numba code, cache, repr."""

import os
import subprocess
import sys
import textwrap
import uuid

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen.runtime import cache_dir
from symgrad.ops import OPS


def _xy_sin():
    x, y = sg.scalars("x y")
    return x, y, x * y + sg.sin(x)


@pytest.fixture(scope="module")
def vg_numba():
    x, y, e = _xy_sin()
    return sg.value_and_grad(e, wrt=[x, y], inputs=[x, y])


def test_source_is_exactly_the_file_that_was_imported_and_compiled(vg_numba):
    path = vg_numba._module.__file__
    assert os.path.dirname(os.path.abspath(path)) == os.path.abspath(cache_dir())
    if os.environ.get("SYMGRAD_CACHE_DIR"):
        assert os.path.samefile(os.path.dirname(path), os.environ["SYMGRAD_CACHE_DIR"])
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == vg_numba.source


def test_source_is_a_self_contained_module():
    # numba's cache=True needs a file, so run the numpy backend's text here
    x, y, e = _xy_sin()
    vg = sg.value_and_grad(e, wrt=[x, y], inputs=[x, y], backend="numpy")
    namespace = {}
    exec(compile(vg.source, "<symgrad source>", "exec"), namespace)
    value, (dx, dy) = namespace["call"](0.7, -1.3)
    assert value == pytest.approx(0.7 * -1.3 + np.sin(0.7), rel=1e-15)
    assert dx == pytest.approx(-1.3 + np.cos(0.7), rel=1e-15) and dy == 0.7


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiling_the_same_graph_twice_gives_identical_source(backend):
    def build():
        X = sg.tensor("X", shape=("n", "d"))
        w = sg.tensor("w", shape=("d",))
        t = sg.tensor("t", shape=("n",))
        loss = sg.mean(sg.log1p(sg.exp(-(X @ w) * t))) + 0.01 * sg.sum(w * w)
        return sg.value_and_grad(loss, wrt=w, inputs=[w, X, t], backend=backend)

    first = build()
    second = build()
    assert first.source == second.source
    assert first._module.__file__ == second._module.__file__


def test_shared_subexpressions_are_computed_once(vg_numba):
    # d/dx (x*y + sin x) = y + cos x: sin and cos each appear once, for value and gradient (scalar
    # code calls libm; only SIMD lanes pair them in one vsincos)
    assert vg_numba.source.count("np.sin(") == 1
    assert vg_numba.source.count("np.cos(") == 1
    assert "sincos(" not in vg_numba.source


def test_one_kernel_and_one_entry_function(vg_numba):
    source = vg_numba.source
    assert source.count("\ndef kernel(") == 1 and source.count("\ndef call(") == 1
    assert "@numba.njit" in source
    x, y, e = _xy_sin()
    numpy_source = sg.value_and_grad(e, wrt=[x, y], backend="numpy").source
    assert "numba" not in numpy_source and numpy_source.count("\ndef kernel(") == 1


def test_inputs_lists_the_call_order(vg_numba):
    x, y, e = _xy_sin()
    assert vg_numba.inputs == (x, y)
    assert vg_numba.input_names == ("x", "y")
    f = sg.compile(e, inputs=[y, x])
    assert f.inputs == (y, x)
    assert f.source.count("def call(y=_MISSING, x=_MISSING, /") == 1


def test_kernel_is_callable_from_the_users_own_njit_function():
    X = sg.tensor("X", shape=("n",))
    w = sg.scalar("w")
    vg = sg.value_and_grad(sg.sum((X * w - 1.0) ** 2), wrt=w, inputs=[w, X])
    assert isinstance(vg.kernel, numba.core.registry.CPUDispatcher)
    kernel = vg.kernel

    @numba.njit
    def descend(w, X, steps, rate):
        total = 0.0
        for _ in range(steps):
            out = kernel(w, X)
            total += out[0]
            w = w - rate * out[1]
        return w, total

    data = np.array([1.0, 2.0])
    w_final, total = descend(0.0, data, 200, 0.05)
    # minimiser of sum((X w - 1)^2) is sum(X) / sum(X^2) = 3/5
    assert w_final == pytest.approx(0.6, abs=1e-12)
    # the same loop by hand in numpy: loss 5w^2 - 6w + 2, gradient 10w - 6
    w_ref, total_ref = 0.0, 0.0
    for _ in range(200):
        total_ref += np.sum((data * w_ref - 1.0) ** 2)
        w_ref -= 0.05 * np.sum(2 * (data * w_ref - 1.0) * data)
    assert total == pytest.approx(total_ref, rel=1e-12)


SECOND_PROCESS = textwrap.dedent("""
    import sys
    import symgrad as sg
    x = sg.scalar(sys.argv[1])
    f = sg.compile(x * x + 1.0)
    assert f(3.0) == 10.0
    print(f.cache_state)
""")


SEED_SOURCES = textwrap.dedent("""
    import sys
    import symgrad as sg

    x, y = sg.scalars("x y")
    if sys.argv[1] == "after":
        # derivatives built first, and kept, that share nodes with the seed's gradient (cos(x),
        # x*y, y + cos(x)), some of them reached by another rule (sin's JVP) than the seed's
        kept = [
            sg.jvp(sg.sin(x), [x], [1.0]),
            sg.grad(sg.sin(x) * y, [y, x]),
            sg.grad(x * y, [y, x]),
            sg.hessian(sg.sin(x) * y + x * y, [y, x]),
            sg.hvp(sg.sin(x) * x * y, [x, y], [1.0, 2.0]),
            sg.value_grad_and_hessian(y * sg.sin(x) + y * x, [y, x], backend="numpy"),
            sg.value_and_grad(sg.cos(x) + x * y, [y, x], backend="numpy"),
        ]
    seed = x * y + sg.sin(x)
    for backend in ("numpy", "numba"):
        print(sg.value_and_grad(seed, wrt=[x, y], backend=backend).source, end="\\f")
    print(sg.compile(sg.grad(seed, [x, y]), backend="numpy").source, end="\\f")
""")


def test_the_same_expression_gives_the_same_source_whatever_was_built_before():
    def sources(when):
        run = subprocess.run(
            [sys.executable, "-c", SEED_SOURCES, when], capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout.split("\f")[:3]

    fresh, after = sources("fresh"), sources("after")
    assert fresh == after  # byte for byte, so the cache key (a hash of the source) is the same
    # value_and_grad's source carries the rule that built a line (the op table's note) ...
    for text in fresh[:2]:
        (line,) = [line for line in text.splitlines() if "np.cos(x)" in line]
        assert line.endswith(f"  # sin: {OPS['sin'].note}")
    # ... and sg.compile of a gradient built by sg.grad has no rule comments: it was given no notes
    assert "np.cos(x)" in fresh[2] and not any(op.note and op.note in fresh[2] for op in OPS.values())


def test_second_process_loads_machine_code_from_cache(tmp_path, monkeypatch):
    # a fresh symbol name makes source this test session has not compiled before
    name = "x_" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    x = sg.scalar(name)
    first = sg.compile(x * x + 1.0)
    assert first(3.0) == 10.0
    assert first.cache_state == "compiled, saved to cache"
    assert os.path.dirname(first._module.__file__) == str(tmp_path)
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, name], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "machine code loaded from cache"


def test_compiling_again_in_the_same_process_reuses_the_module(vg_numba):
    x, y, e = _xy_sin()
    again = sg.value_and_grad(e, wrt=[x, y], inputs=[x, y])
    assert again.kernel is vg_numba.kernel
    assert again.cache_state == "already compiled in this process"


def test_repr_mentions_inputs_outputs_and_backend():
    X = sg.tensor("X", shape=("n", 3))
    w = sg.tensor("w", shape=(3,))
    vg = sg.value_and_grad(sg.sum(X @ w), wrt=w, inputs=[w, X], backend="numpy")
    text = repr(vg)
    assert "inputs" in text and "w: (3,) float64" in text and "X: (n, 3) float64" in text
    assert "outputs" in text and "value: () float64" in text and "d_w: (3,) float64" in text
    assert "backend: numpy" in text

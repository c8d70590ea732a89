"""The on-disk module cache: named by source and library versions, robust to corrupt files and
to several processes at once; every compile recorded with its cause."""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import symgrad as sg
from codegen import runtime

SCRIPT = textwrap.dedent("""
    import numpy as np
    import symgrad as sg
    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.exp(sg.sin(x)) * x ** 2), wrt=x)
    value, grad = vg(np.linspace(-1.0, 1.0, 7))
    print(repr(float(value)), vg.cache_state, vg._module.__file__)
""")


def _run(cache, count=1):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        value, *state, path = out.split()
        results.append((float(value), " ".join(state), path))
    return results


def _expected():
    x = np.linspace(-1.0, 1.0, 7)
    return float(np.sum(np.exp(np.sin(x)) * x**2))


def test_module_name_hashes_the_library_versions(monkeypatch):
    source = "# a module\nvalue = 1\n"
    first, _ = runtime.load_module(source, "numpy")
    monkeypatch.setattr(runtime, "_versions_text", runtime.library_versions() + " (another numba)")
    second, _ = runtime.load_module(source, "numpy")
    assert first.__name__ != second.__name__ and second.value == 1
    for lib in ("symgrad", "numba", "numpy", "python"):
        assert lib in runtime.library_versions()


def test_svml_and_plain_machine_code_never_share_a_module(monkeypatch):
    # code vectorised with SVML calls __svml_* symbols; a process without SVML must not load it
    import numba

    names = []
    for using in (False, True):
        monkeypatch.setattr(numba.config, "USING_SVML", using, raising=False)
        monkeypatch.setattr(runtime, "_versions_text", None)
        assert ("svml on" if using else "svml off") in runtime.library_versions()
        names.append(runtime.load_module("# a module\nvalue = 2\n", "numpy")[0].__name__)
    assert names[0] != names[1]


def test_concurrent_processes_and_corrupt_cache_files_recompile_never_crash(tmp_path):
    # three cold processes at once share one cache directory
    results = _run(tmp_path, count=3)
    assert all(v == pytest.approx(_expected(), rel=1e-12) for v, _, _ in results)
    path = results[0][2]
    source = open(path, encoding="utf-8").read()
    # truncate the module, and corrupt every numba and bytecode file next to it
    with open(path, "wb") as fh:
        fh.write(source.encode()[:40] + b"\xff\xfe")
    cached = os.path.join(tmp_path, "__pycache__")
    for name in os.listdir(cached):
        with open(os.path.join(cached, name), "r+b") as fh:
            fh.truncate(7)
    ((value, state, again),) = _run(tmp_path)
    assert value == pytest.approx(_expected(), rel=1e-12) and again == path
    assert open(path, encoding="utf-8").read() == source
    # and the next process finds everything in order
    ((value, state, _),) = _run(tmp_path)
    assert state == "machine code loaded from cache"


def test_a_new_batch_size_compiles_nothing_and_new_types_from_numba_are_named():
    X = sg.tensor("X", ("n", "d"))
    w = sg.tensor("w", ("d",))
    vg = sg.value_and_grad(sg.sum(sg.tanh(X @ w) ** 2), wrt=w, inputs=[w, X])
    rng = np.random.default_rng(0)
    for n in (1, 16, 1000):
        vg(rng.normal(size=3), rng.normal(size=(n, 3)))
    vg(rng.normal(size=3).tolist(), rng.normal(size=(5, 3)).astype(np.float32))  # converted, not compiled
    (build,) = vg.compiles
    assert build["cause"] == "build" and "X: array(float64, 2d, C)" in build["signature"]
    kernel = vg.kernel

    @numba.njit
    def user(w, X):
        return kernel(w, X)[0]

    user(np.ones(3), np.ones((4, 6))[:, ::2])  # a strided view: another layout
    build, extra = vg.compiles
    assert "argument 'X' is array(float64, 2d, A)" in extra["cause"] and "'w'" not in extra["cause"]


def test_readonly_and_unaligned_arrays_run_the_built_machine_code_without_recompiling():
    # the entry calls the compiled overload directly, so what reaches it must have its layout
    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.exp(x) * x), wrt=x)
    data = np.linspace(0.0, 1.0, 5)
    want = vg(data)
    readonly = data.copy()
    readonly.flags.writeable = False
    unaligned = np.zeros(5 * 8 + 1, dtype=np.uint8)[1:].view(np.float64)
    unaligned[:] = data
    assert not unaligned.flags.aligned
    for arg in (readonly, unaligned, data[::-1][::-1], list(data)):
        value, grad = vg(arg)
        assert value == want[0] and np.array_equal(grad, want[1])
    assert len(vg.kernel.signatures) == 1 and len(vg.compiles) == 1

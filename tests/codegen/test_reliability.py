"""Threads, the cache directory, very large kernels and bad calls in a separate process."""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symgrad as sg
from symgrad.cli import main


def test_compiling_and_calling_from_several_threads_gives_correct_results():
    X = sg.tensor("X", ("n", 3))
    w = sg.tensor("w", (3,))

    def build(k):
        loss = sg.sum(sg.tanh(X @ w) * (k + 1.0))
        return k, sg.value_and_grad(loss, wrt=w, inputs=[X, w])

    with ThreadPoolExecutor(4) as pool:
        built = dict(pool.map(build, range(4)))
    rng = np.random.default_rng(0)
    Xv, wv = rng.normal(size=(50, 3)), rng.normal(size=3)
    h = np.tanh(Xv @ wv)

    def call(k):
        value, g = built[k % 4](Xv, wv)
        return k % 4, value, g

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(200)))
    for k, value, g in results:
        assert value == pytest.approx((k + 1.0) * h.sum(), rel=1e-13)
        np.testing.assert_allclose(g, (k + 1.0) * Xv.T @ (1 - h * h), rtol=1e-12)


def test_unwritable_cache_directory_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(blocker / "cache"))
    x = sg.scalar("x")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        f = sg.compile(sg.sin(x) * 3.0 + 1.25, backend="numpy")
    assert f(0.5) == pytest.approx(np.sin(0.5) * 3 + 1.25)


def test_cache_clear_and_info(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    x = sg.scalar("x")
    sg.compile(sg.cos(x) * 7.5, backend="numpy")
    assert any(p.name.startswith("symgrad_") for p in tmp_path.iterdir())
    assert main(["cache", "info"]) == 0
    assert str(tmp_path) in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert not any(p.name.startswith("symgrad_") for p in tmp_path.iterdir())


def test_a_kernel_too_large_for_numba_is_refused_naming_the_limit(monkeypatch):
    monkeypatch.setenv("SYMGRAD_MAX_STATEMENTS", "40")
    x = sg.scalar("x")
    y = x
    for _ in range(30):
        y = sg.sin(y) * y + 0.5
    with pytest.raises(sg.UnsupportedError, match="SYMGRAD_MAX_STATEMENTS"):
        sg.value_and_grad(y, wrt=x)
    vg = sg.value_and_grad(y, wrt=x, backend="numpy")  # the reference backend has no limit
    assert np.isfinite(vg(0.3)[1])


def test_bad_calls_never_take_the_process_down():
    # in a child process, so a crash would show as a signal, not as a dead test runner
    script = textwrap.dedent("""
        import numpy as np, symgrad as sg
        X = sg.tensor("X", ("n", "d")); w = sg.tensor("w", ("d",)); t = sg.tensor("t", ("n",))
        vg = sg.value_and_grad(sg.sum((X @ w - t) ** 2) + sg.sum(w[1:]), wrt=w, inputs=[X, w, t])
        bad = [
            (np.ones((5, 3, 1)), np.ones(3), np.ones(5)),        # wrong rank
            (np.ones((5, 3)), np.ones(4), np.ones(5)),           # wrong size against d
            (np.ones((5, 3)), np.ones(3), np.ones(6)),           # wrong size against n
            (np.ones((5, 3), dtype=complex), np.ones(3), np.ones(5)),
            (np.array([[object()]] * 5), np.ones(3), np.ones(5)),
            (None, np.ones(3), np.ones(5)),
            ("abc", np.ones(3), np.ones(5)),
            ([[1, 2, 3]] * 5, [1.0, 2.0], np.ones(5)),           # nested lists, wrong size
            (np.ones((5, 0)), np.ones(0), np.ones(5)),           # w[1:] needs d >= 1
        ]
        errors = 0
        for args in bad:
            try:
                vg(*args)
            except sg.InputError:
                errors += 1
        ok = vg([[1, 2, 3]] * 5, [1.0, 2.0, 3.0], np.arange(5))  # nested lists convert
        assert np.isfinite(ok[0])
        # a 0-d array for a scalar input, and a size-1 batch, are ordinary calls
        x = sg.scalar("x")
        assert sg.compile(x * 2.0)(np.array(1.5)) == 3.0
        vg(np.ones((1, 1)), np.ones(1), np.ones(1))
        print("INPUT_ERRORS", errors, len(bad))
    """)
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INPUT_ERRORS 9 9" in proc.stdout

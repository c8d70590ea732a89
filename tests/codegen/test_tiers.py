"""A background build (``sg.config(compile="background")``, codegen/tiers.py) serves its first
calls from the numpy backend's twin of the kernel while numba compiles, then switches to numba's
machine code; ``sync`` waits for numba. No test times anything: a compile is held back by a gate
the test opens, so which tier runs a call is decided by the test, not by the machine's speed."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import symgrad as sg
from symgrad import settings
from symgrad.codegen import tiers
from symgrad.errors import InputError


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.setattr(settings, "_explicit", {})
    monkeypatch.delenv("SYMGRAD_COMPILE", raising=False)
    monkeypatch.delenv("SYMGRAD_VERBOSE", raising=False)
    sg.config(verbose=0)


def _mlp_loss():
    W = sg.tensor("W", ("d", "h"))
    X = sg.tensor("X", ("n", "d"))
    t = sg.tensor("t", ("n",))
    s = sg.scalar("s")
    loss = sg.sum((sg.tanh(X @ W).sum(axis=1) - t) ** 2) / s + sg.log1p(sg.exp(-s))
    return loss, [W, s], [W, s, X, t]


def _args(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 4)) * 0.3, 1.7, rng.normal(size=(6, 3)), rng.normal(size=6)


def _reference(W, s, X, t):
    """The loss and its gradient by hand in numpy (an independent truth)."""
    a = np.tanh(X @ W)
    r = a.sum(axis=1) - t
    value = np.sum(r**2) / s + np.log1p(np.exp(-s))
    g = 2 * r / s
    dW = X.T @ (g[:, None] * (1 - a**2))
    ds = -np.sum(r**2) / s**2 - np.exp(-s) / (1 + np.exp(-s))
    return value, dW, ds


def test_first_calls_run_on_numpy_then_the_function_switches_to_numba(gate):
    loss, wrt, ins = _mlp_loss()
    vg = sg.value_and_grad(loss, wrt=wrt, inputs=ins)
    assert vg.tier == "numpy"
    (record,) = vg.compiles
    assert record["compile"] == "background" and record["first_tier"] == "numpy"
    assert record["numba_ready_s"] is None and record["tier"] == "numpy"
    args = _args()
    value, (dW, ds) = vg(*args)
    want = _reference(*args)
    # what numba's machine code returns: Python floats for scalars, C-contiguous float64 arrays
    assert type(value) is float and type(ds) is float
    assert dW.dtype == np.float64 and dW.flags.c_contiguous and dW.shape == (3, 4)
    np.testing.assert_allclose(value, want[0], rtol=1e-12)
    np.testing.assert_allclose(dW, want[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ds, want[2], rtol=1e-12)
    # the entry's checks run on the first tier too
    with pytest.raises(InputError, match=r"argument 'X': dimension 1 is 5, but dimension 'd' is 3"):
        vg(args[0], 1.0, np.ones((6, 5)), args[3])
    gate.set()
    assert vg.wait() is vg
    assert vg.tier == "numba"
    (record,) = vg.compiles
    assert record["tier"] == "numba" and record["numba_ready_s"] >= record["seconds"]
    assert record["cache"] == "compiled, saved to cache" and "numba compile" in record["phases"]
    again = vg(*args)
    # numba's fused loops may add in another order: equal to the first tier to rounding
    np.testing.assert_allclose(again[0], value, rtol=1e-13)
    np.testing.assert_allclose(again[1][0], dW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(again[1][1], ds, rtol=1e-13)
    assert type(again[0]) is float and type(again[1][1]) is float
    # this process has the machine code now: building the same function again needs no first tier
    same = sg.value_and_grad(loss, wrt=wrt, inputs=ins)
    assert same.tier == "numba" and same.compiles[0]["first_tier"] == "numba"
    assert same.cache_state == "already compiled in this process"


def test_kernel_and_save_wait_for_numba(gate, tmp_path):
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(sg.sin(x) * x))
    assert f.tier == "numpy"
    data = np.linspace(-1, 1, 7)
    assert np.isclose(f(data), np.sum(np.sin(data) * data), rtol=1e-13)
    threading.Timer(0.05, gate.set).start()
    kernel = f.kernel  # waits for numba
    assert f.tier == "numba"
    assert kernel.signatures  # the dispatcher, compiled
    assert np.isclose(kernel(data)[0], np.sum(np.sin(data) * data), rtol=1e-13)
    path = f.save(tmp_path / "saved_sin.py")
    assert "@numba.njit" in open(path).read()


def test_sync_waits_for_numba_and_the_results_agree_with_the_first_tier():
    loss, wrt, ins = _mlp_loss()
    args = _args(1)
    with sg.config(compile="sync"):
        vg_sync = sg.value_and_grad(loss, wrt=wrt, inputs=ins)
    assert vg_sync.tier == "numba" and vg_sync.compiles[0]["compile"] == "sync"
    assert vg_sync.compiles[0]["numba_ready_s"] == vg_sync.compiles[0]["seconds"]
    want = _reference(*args)
    value, (dW, ds) = vg_sync(*args)
    np.testing.assert_allclose([value, ds], [want[0], want[2]], rtol=1e-12)
    np.testing.assert_allclose(dW, want[1], rtol=1e-12, atol=1e-14)


def test_a_traced_function_waits_and_reports_both_tiers(gate):
    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)

    vg = sg.value_and_grad(loss)
    rng = np.random.default_rng(2)
    w, x = rng.normal(size=3), rng.normal(size=(5, 3))
    value, grad = vg(w, x)
    a = np.tanh(x @ w)
    np.testing.assert_allclose(value, np.sum(a**2), rtol=1e-13)
    np.testing.assert_allclose(grad, x.T @ (2 * a * (1 - a**2)), rtol=1e-12)
    assert [r["tier"] for r in vg.compiles] == ["numpy"]
    gate.set()
    vg.wait()
    assert [r["tier"] for r in vg.compiles] == ["numba"]
    np.testing.assert_allclose(vg(w, x)[1], grad, rtol=1e-12)


def test_an_index_out_of_range_on_the_first_tier_is_numbas_input_error(gate):
    x = sg.tensor("x", ("n",))
    i = sg.scalar("i", dtype="int64")
    f = sg.compile(x[i] * 2.0, inputs=[x, i])
    threading.Timer(0.05, gate.set).start()
    with pytest.raises(InputError, match="an integer index passed to the compiled function is out of range"):
        f(np.ones(3), 7)
    assert f.tier == "numba"


def test_a_first_tier_that_raises_behind_the_closed_gate_fails_the_test_instead_of_hanging(gate, monkeypatch):
    # the first tier waits for numba when its twin raises; the gate holds numba back, so the
    # wait ends after gate.timeout with the test's failure (the twin's error as its context)
    original = tiers.first_tier

    def broken_twin(numpy_kernel, *rest):
        def kernel(*args):
            raise RuntimeError("the twin broke")

        return original(kernel, *rest)

    monkeypatch.setattr(tiers, "first_tier", broken_twin)
    gate.timeout = 0.2
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(x * x))
    with pytest.raises(
        pytest.fail.Exception, match=r"waited 0.2 s for numba while the test held the gate"
    ) as failed:
        f(np.ones(3))
    assert isinstance(failed.value.__context__, RuntimeError)


def test_a_loop_of_calls_waits_for_numba_instead_of_sharing_the_gil_with_it(gate, monkeypatch):
    # the first tier serves calls while they take a small share of the time since the build;
    # with no share allowed, the second call waits for numba's machine code
    monkeypatch.setattr(tiers, "FIRST_TIER_FLOOR", 0.0)
    monkeypatch.setattr(tiers, "FIRST_TIER_SHARE", 0.0)
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(sg.cosh(x) * x))
    data = np.linspace(-2, 2, 9)
    want = np.sum(np.cosh(data) * data)
    assert np.isclose(f(data), want, rtol=1e-13) and f.tier == "numpy"
    threading.Timer(0.05, gate.set).start()
    assert np.isclose(f(data), want, rtol=1e-13)
    assert f.tier == "numba"


def test_a_float32_graph_waits_for_numba_whose_sums_add_in_float64():
    x = sg.tensor("x", ("n",), dtype="float32")
    f = sg.compile(sg.sum(x * x))
    (record,) = f.compiles
    assert record["first_tier"] == "numba" and record["compile"] == "sync" and f.tier == "numba"
    data = (1 + np.linspace(-1, 1, 1001) * 1e-3).astype(np.float32)
    want = float(np.sum(data.astype(np.float64) ** 2))
    assert abs(float(f(data)) - want) <= 2 * np.spacing(np.float32(want))


@pytest.fixture
def unsupported_op():
    """A user op numba cannot type (type(x).__name__; plain Python runs it), unregistered after
    the test: the op table is the process's, and other test files check what it holds."""

    def bad(x):
        return x + len(type(x).__name__)

    name = "tier_test_untypable"
    op = sg.register_op(name, bad, derivative=lambda x: 1.0 + 0.0 * x)
    yield op
    sg.unregister_op(name)


def test_a_failed_numba_compile_raises_the_sync_error_at_the_next_call_and_wait(unsupported_op):
    op = unsupported_op
    x = sg.scalar("x")
    with sg.config(compile="sync"):
        with pytest.raises(Exception) as sync_error:
            sg.compile(op(x) * 2.0)
    f = sg.compile(op(x) * 3.0)
    with pytest.raises(type(sync_error.value), match="No implementation of function") as waited:
        f.wait()
    assert type(waited.value) is type(sync_error.value)
    with pytest.raises(type(sync_error.value), match="No implementation of function"):
        f(1.0)
    with pytest.raises(type(sync_error.value), match="No implementation of function"):
        f.kernel  # noqa: B018
    assert "numba failed" in f.compiles[0]["cache"] and f.compiles[0]["numba_ready_s"] is None


@pytest.mark.parametrize("bad", ["fast", "", 1, True, None.__class__])
def test_config_refuses_a_bad_compile_mode(bad):
    with pytest.raises(InputError, match=r"symgrad.config: compile must be 'background' .* or 'sync'"):
        sg.config(compile=bad)


def test_the_environment_variable_sets_the_mode_and_config_wins(monkeypatch):
    monkeypatch.setenv("SYMGRAD_COMPILE", "SYNC")
    assert sg.config()["compile"] == "sync"
    with sg.config(compile="background"):
        assert sg.config()["compile"] == "background"
    monkeypatch.setenv("SYMGRAD_COMPILE", "later")
    with pytest.raises(InputError, match=r"environment variable SYMGRAD_COMPILE='later': compile must be"):
        sg.config()
    x = sg.scalar("x")
    with pytest.raises(InputError, match="SYMGRAD_COMPILE='later'"):
        sg.compile(sg.sin(x) * 5.0)


def _run(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, env=env
    )


def test_the_interpreter_exits_cleanly_with_a_compile_running(tmp_path):
    # the compile starts only once the main thread has finished (the worst moment: the
    # interpreter is shutting down); the process exits with its own status, no crash, no hang,
    # and the compile that ran during the exit filled the disk cache
    code = """
        import threading
        import numpy as np
        import symgrad as sg
        from symgrad.codegen import tiers
        run = tiers.NumbaJob.run
        def late(job):
            threading.main_thread().join()
            run(job)
        tiers.NumbaJob.run = late
        x = sg.tensor("x", ("n",))
        f = sg.compile(sg.sum(sg.tanh(x) * sg.exp(-x)))
        print(f.tier, float(f(np.ones(3))), tiers.pending(), flush=True)
        raise SystemExit("stopped")
        """
    cache = str(tmp_path / "cache")
    first = _run(code, {"SYMGRAD_CACHE_DIR": cache, "SYMGRAD_VERBOSE": "0"})
    assert first.returncode == 1 and first.stderr.strip() == "stopped"
    tier, value, pending = first.stdout.split()
    assert tier == "numpy" and pending == "1"
    assert float(value) == pytest.approx(3 * np.tanh(1.0) * np.exp(-1.0), rel=1e-13)
    second = _run(
        """
        import symgrad as sg
        x = sg.tensor("x", ("n",))
        f = sg.compile(sg.sum(sg.tanh(x) * sg.exp(-x)))
        print(f.cache_state)
        """,
        {"SYMGRAD_CACHE_DIR": cache, "SYMGRAD_VERBOSE": "0"},
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "machine code loaded from cache"


def test_numbas_compile_starts_once_the_first_call_has_returned(monkeypatch):
    # numba's module load would share the GIL with the first call: the worker holds off until
    # that call has returned (START_DELAY, here longer than any compile, is not what starts it)
    monkeypatch.setattr(tiers, "START_DELAY", 600.0)
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(sg.sinh(x) * x))
    job = f._job
    assert not job.go.is_set()
    data = np.linspace(-1.0, 1.0, 7)
    assert f(data) == pytest.approx(np.sum(np.sinh(data) * data), rel=1e-13)
    assert job.go.is_set()
    assert job.finished.wait(300) and f.tier == "numba"
    assert f(data) == pytest.approx(np.sum(np.sinh(data) * data), rel=1e-13)


def test_numbas_compile_starts_after_the_start_delay_without_a_call(monkeypatch):
    monkeypatch.setattr(tiers, "START_DELAY", 0.01)
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(sg.cosh(x) * x * x))
    assert f._job.finished.wait(300) and not f._job.go.is_set()
    assert f.tier == "numba"
    data = np.linspace(-1.0, 1.0, 7)
    assert f(data) == pytest.approx(np.sum(np.cosh(data) * data * data), rel=1e-13)


def test_the_first_tier_runs_before_numba_is_imported_and_the_worker_imports_it(tmp_path):
    # numba's import (0.5-1 s) is the worker's, not the build's: held back, numba stays
    # unimported while the build returns and its first calls run on the twin
    code = """
        import sys, threading
        import numpy as np
        import symgrad as sg
        from symgrad.codegen import tiers
        opened, run = threading.Event(), tiers.NumbaJob.run
        def held(job):
            opened.wait()
            run(job)
        tiers.NumbaJob.run = held
        x = sg.tensor("x", ("n",))
        s = sg.scalar("s")
        vg = sg.value_and_grad(sg.sum(sg.tanh(x * s) ** 2), wrt=[x, s])
        first = vg(np.linspace(-1.0, 1.0, 5), 0.5)
        print("numba" in sys.modules, vg.tier, first[0], flush=True)
        opened.set()
        vg.wait()
        (record,) = vg.compiles
        print("numba" in sys.modules, vg.tier, vg(np.linspace(-1.0, 1.0, 5), 0.5)[0], record["signature"])
        """
    done = _run(code, {"SYMGRAD_CACHE_DIR": str(tmp_path / "cache"), "SYMGRAD_VERBOSE": "0"})
    assert done.returncode == 0, done.stderr
    before, after = (line.split(maxsplit=3) for line in done.stdout.splitlines())
    want = np.sum(np.tanh(np.linspace(-1.0, 1.0, 5) * 0.5) ** 2)
    assert before[:2] == ["False", "numpy"] and float(before[2]) == pytest.approx(want, rel=1e-13)
    assert after[:2] == ["True", "numba"] and float(after[2]) == pytest.approx(want, rel=1e-13)
    assert after[3] == "x: array(float64, 1d, C), s: float64"


def test_a_long_loop_on_the_first_tier_runs_the_twin_then_numbas_row_blocks(gate):
    """A call long enough for the row blocks (codegen/threads.py) before numba is ready runs on
    the numpy twin; once numba is bound, the same call runs its row blocks."""
    from symgrad.codegen.threads import MIN_ROWS

    x = sg.tensor("x", ("n",))
    loss = sg.sum(100.0 * (x[6:] - x[:-6] ** 2) ** 2 + (1.0 - x[:-6]) ** 2)
    vg = sg.value_and_grad(loss, wrt=x)
    assert "kernel_blocks" in vg.source
    xs = np.random.default_rng(3).uniform(-1, 1, MIN_ROWS + 10)
    a, b = xs[:-6], xs[6:]
    want_value = np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2)
    want = np.zeros_like(xs)
    want[:-6] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    want[6:] += 200.0 * (b - a**2)
    value, grad = vg(xs)
    assert vg.tier == "numpy"
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-9)
    gate.set()
    vg.wait()
    assert vg.tier == "numba"
    value2, grad2 = vg(xs)
    np.testing.assert_allclose(value2, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad2, want, rtol=1e-12, atol=1e-9)


def _euler_numpy(a, x0, obs):
    x, loss = x0, 0.0
    for o in obs:
        x = x + 0.01 * a * np.sin(x)
        loss = loss + (x - o) ** 2
    return loss


def test_the_twin_of_a_rolled_loop_rolls_it_too_and_agrees_with_numba_and_central_differences(gate):
    """A numba kernel whose Python loop rolled into a ``for`` has a twin with the same loop (not
    the loop's hundreds of statements written out), giving numba's value and gradient."""
    steps = 300
    a, x0, obs = sg.scalar("a"), sg.scalar("x0"), sg.tensor("obs", (steps,))
    x, loss = x0, 0.0
    for i in range(steps):
        x = x + 0.01 * a * sg.sin(x)
        loss = loss + (x - obs[i]) ** 2
    vg = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs])
    assert vg.tier == "numpy"
    with open(vg._job.numpy_module.__file__, encoding="utf-8") as fh:
        twin = fh.read()
    # the loop written out is more than 5 lines a step; rolled, the twin is as short as the module
    assert "rolled into a loop" in twin and twin.count("\n") < steps
    data = 0.5 + np.random.default_rng(4).normal(size=steps) * 0.1
    h = 1e-6
    want = [
        (_euler_numpy(1.1 + h, 0.4, data) - _euler_numpy(1.1 - h, 0.4, data)) / (2 * h),
        (_euler_numpy(1.1, 0.4 + h, data) - _euler_numpy(1.1, 0.4 - h, data)) / (2 * h),
    ]
    value, grad = vg(1.1, 0.4, data)
    assert vg.tier == "numpy"
    np.testing.assert_allclose(value, _euler_numpy(1.1, 0.4, data), rtol=1e-12)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    gate.set()
    vg.wait()
    value2, grad2 = vg(1.1, 0.4, data)
    np.testing.assert_allclose(value2, value, rtol=1e-13)
    np.testing.assert_allclose(grad2, grad, rtol=1e-13)


def test_the_twin_of_a_rolled_tensor_loop_keeps_its_array_statements(gate):
    """A traced loop with tensor state rolls (``rolling``) in the twin too, its steps numpy array
    statements; the value and gradient are numba's and the central differences'."""
    steps = 120
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", (steps, 3))
    h, loss = h0, 0.0
    for t in range(steps):
        h = sg.tanh(W @ h + xs[t])
        loss = loss + sg.sum(h * h)
    vg = sg.value_and_grad(loss, wrt=W, inputs=[W, h0, xs])
    with open(vg._job.numpy_module.__file__, encoding="utf-8") as fh:
        twin = fh.read()
    # each step written out is several array statements; rolled, the twin's length does not grow
    assert "rolled into a loop" in twin and twin.count("\n") < 2 * steps

    def reference(Wv, h0v, xv):
        hv, total = h0v, 0.0
        for t in range(steps):
            hv = np.tanh(Wv @ hv + xv[t])
            total += np.sum(hv * hv)
        return total

    rng = np.random.default_rng(5)
    Wv, h0v, xv = rng.normal(size=(3, 3)) * 0.4, rng.normal(size=3), rng.normal(size=(steps, 3))
    want = np.zeros_like(Wv)
    for i in np.ndindex(3, 3):
        e = np.zeros_like(Wv)
        e[i] = 1e-6
        want[i] = (reference(Wv + e, h0v, xv) - reference(Wv - e, h0v, xv)) / 2e-6
    value, grad = vg(Wv, h0v, xv)
    assert vg.tier == "numpy"
    np.testing.assert_allclose(value, reference(Wv, h0v, xv), rtol=1e-12)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-8)
    gate.set()
    vg.wait()
    value2, grad2 = vg(Wv, h0v, xv)
    np.testing.assert_allclose(value2, value, rtol=1e-12)
    np.testing.assert_allclose(grad2, grad, rtol=1e-12, atol=1e-14)


def test_a_scalar_given_as_an_array_of_rank_one_is_an_input_error_on_either_tier(gate):
    # the numba entry leaves a 0-d array's rank to the machine code's read, which refuses any
    # other rank; the first tier refuses it the same way
    u, v = sg.scalars("u v")
    vg = sg.value_and_grad(u * sg.cos(v) + v * v, wrt=[u, v], inputs=[u, v])
    assert vg.tier == "numpy"
    for tier in ("numpy", "numba"):
        if tier == "numba":
            gate.set()
            vg.wait()
        assert vg.tier == tier
        for bad, shape in [(np.array([0.5]), r"\(1,\)"), (np.ones((1, 1)), r"\(1, 1\)")]:
            with pytest.raises(
                InputError, match=rf"argument 'v' must be a scalar, got an array of shape {shape}"
            ):
                vg(0.3, bad)
        value, (du, dv) = vg(np.array(0.3), v=np.array(0.5))
        assert value == pytest.approx(0.3 * np.cos(0.5) + 0.25, rel=1e-15)
        assert (du, dv) == pytest.approx((np.cos(0.5), -0.3 * np.sin(0.5) + 1.0), rel=1e-15)


def test_an_int_goes_to_either_tier_as_it_is_and_one_too_large_is_an_input_error(gate):
    # no range test in the entry: numba's read (or the first tier's np.float64) of an int too
    # large for a float64 raises OverflowError, which the entry names
    u, v = sg.scalars("u v")
    vg = sg.value_and_grad(u * sg.cos(v) + v * v, wrt=[u, v], inputs=[u, v])
    assert "9223372036854775808" not in vg.source and "OverflowError" in vg.source
    for tier in ("numpy", "numba"):
        if tier == "numba":
            gate.set()
            vg.wait()
        assert vg.tier == tier
        for big in (10**400, -(10**309)):
            with pytest.raises(InputError, match=r"argument 'v': the int -?10{3}.*is too large for float64"):
                vg(0.3, big)
        for u0, v0 in [(3, -2), (-(2**63), 2**70), (True, 10**300)]:
            value, (du, dv) = vg(u0, v0)
            want, (want_du, want_dv) = vg(float(u0), float(v0))
            assert (value, du, dv) == (want, want_du, want_dv), (u0, v0)


def test_a_numba_compile_runs_with_a_deep_recursion_limit_and_restores_it():
    # numba's SSA pass recurses once per basic block: a kernel of thousands of branches needs
    # more than Python's default 1,000 frames
    import sys

    from symgrad.codegen import COMPILE_RECURSION, deep_recursion

    before = sys.getrecursionlimit()
    seen = []

    def probe(depth):
        return depth if depth == 0 else probe(depth - 1)

    with deep_recursion():
        seen.append(sys.getrecursionlimit())
        with deep_recursion():  # a compile inside another (the worker beside the caller)
            seen.append(sys.getrecursionlimit())
        seen.append(sys.getrecursionlimit())
        assert probe(min(COMPILE_RECURSION, 20_000) - 100) == 0
    assert seen == [max(before, COMPILE_RECURSION)] * 3
    assert sys.getrecursionlimit() == before

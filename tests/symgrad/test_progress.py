"""A build longer than ``announce_after`` seconds says so on stderr (what compiles, then done with
the time); ``sg.config(verbose=...)`` and ``SYMGRAD_VERBOSE`` silence it or add the phases; the
build record (``.compiles``, ``Compiled.build_phases``) has the seconds of each phase.

No test times anything: a slow build is made by a threshold of 0 seconds."""

import io
import re

import numpy as np
import pytest

import symgrad as sg
from symgrad import settings
from symgrad.codegen import progress


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.setattr(settings, "_explicit", {})
    monkeypatch.delenv("SYMGRAD_VERBOSE", raising=False)
    monkeypatch.delenv("SYMGRAD_COMPILE", raising=False)


def _loss():
    x = sg.tensor("x", ("n",))
    return sg.sum(sg.sin(x) * x), x


def _report(text):
    return [line for line in text.splitlines() if line.startswith("symgrad:")]


def test_a_slow_build_says_what_compiles_then_done_with_the_time(capsys):
    loss, x = _loss()
    sg.config(announce_after=0)
    vg = sg.value_and_grad(loss, wrt=x, backend="numpy")
    first, done = _report(capsys.readouterr().err)
    lines = vg.source.count("\n")
    # the line says what compiles; with a threshold of 0 the timer may run before the emit
    assert re.fullmatch(
        rf"symgrad: compiling value_and_grad\(wrt=\[x\]\)(, {lines} generated lines)?( \(\w+\))? \.\.\.",
        first,
    ), first
    assert re.fullmatch(
        rf"symgrad: value_and_grad\(wrt=\[x\]\) done in \d+\.\d s \({lines} generated lines\)", done
    )
    value, grad = vg(np.array([0.5, 2.0]))
    assert np.isclose(value, 0.5 * np.sin(0.5) + 2 * np.sin(2.0))


def test_a_fast_build_is_silent_and_verbose_0_silences_a_slow_one(capsys):
    loss, x = _loss()
    sg.config(announce_after=3600)  # no build here takes an hour
    sg.value_and_grad(loss, wrt=x, backend="numpy")
    assert _report(capsys.readouterr().err) == []
    with sg.config(verbose=0, announce_after=0):
        sg.value_and_grad(loss, wrt=x, backend="numpy")
    assert _report(capsys.readouterr().err) == []
    assert settings.current() == {
        "verbose": 1,
        "announce_after": 3600.0,
        "threads": None,
        "compile": "background",
    }  # the block's settings are gone


def test_the_environment_variable_sets_verbose_and_config_wins(capsys, monkeypatch):
    loss, x = _loss()
    sg.config(announce_after=0)
    monkeypatch.setenv("SYMGRAD_VERBOSE", "0")
    sg.value_and_grad(loss, wrt=x, backend="numpy")
    assert _report(capsys.readouterr().err) == []
    monkeypatch.setenv("SYMGRAD_VERBOSE", "2")
    sg.value_and_grad(loss, wrt=x, backend="numpy")
    _, done = _report(capsys.readouterr().err)
    # verbose 2: the done line gives every phase
    assert re.search(r"differentiate \d+\.\d\d s, emit \d+\.\d\d s, load \d+\.\d\d s\)$", done), done
    with sg.config(verbose=1):
        sg.value_and_grad(loss, wrt=x, backend="numpy")
    _, done = _report(capsys.readouterr().err)
    assert "emit" not in done
    assert sg.config()["verbose"] == 2


def test_a_traced_function_reports_one_build_and_records_its_phases(capsys):
    def loss(w, data):
        return np.sum((data @ w - 1.0) ** 2)

    sg.config(announce_after=0, verbose=2, compile="sync")  # the build's phases include numba's
    vg = sg.value_and_grad(loss, backend="numba")
    w, data = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.25]])
    value, grad = vg(w, data)
    assert np.isclose(value, np.sum((data @ w - 1.0) ** 2))
    assert np.allclose(grad, 2 * data.T @ (data @ w - 1.0))
    report = _report(capsys.readouterr().err)
    assert len(report) == 2  # the compile inside the traced build joins it
    assert report[0].startswith("symgrad: compiling value_and_grad(")
    assert "loss" in report[0] and f"({vg.source.count(chr(10))} generated lines; trace " in report[1]
    assert "trace " in report[1] and "numba compile " in report[1]
    (build,) = vg.compiles
    phases = build["phases"]
    assert list(phases) == ["trace", "differentiate", "emit", "load", "numba compile"]
    assert all(s >= 0.0 for s in phases.values())
    # the compile's own seconds are the phases after the trace (and its differentiation)
    assert phases["emit"] + phases["load"] + phases["numba compile"] <= build["seconds"]
    assert vg.compiled_for(w, data).build_phases == phases
    vg(w, data)  # a call compiles nothing and says nothing
    assert _report(capsys.readouterr().err) == [] and len(vg.compiles) == 1


def test_the_timer_announces_once_and_a_failed_build_says_so():
    out = io.StringIO()
    build = progress.Build("f", 1, 3600.0, out)
    build.lines = 12
    build._announce()  # what the timer thread does when the time has passed
    build._announce()
    build.finish()
    first, done = out.getvalue().splitlines()
    assert first == "symgrad: compiling f, 12 generated lines ..."
    assert re.fullmatch(r"symgrad: f done in \d+\.\d s \(12 generated lines\)", done)
    out = io.StringIO()
    build = progress.Build("g", 1, 0.0, out)
    with build.measure("trace"):
        pass
    build.finish(failed=True)
    assert out.getvalue().splitlines()[-1].startswith("symgrad: g failed after ")


def test_a_phase_measured_inside_another_counts_for_itself_alone(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 7.0, 10.0, 20.0, 21.0])  # a fake perf_counter: no timing
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    build = progress.Build("f", 0, 3600.0, io.StringIO())  # reads the clock once (0.0)
    with build.measure("trace"):  # 1.0 .. 10.0
        with build.measure("differentiate"):  # 3.0 .. 7.0
            pass
    with build.measure("trace"):  # 20.0 .. 21.0
        pass
    assert build.phases == {"trace": 5.0 + 1.0, "differentiate": 4.0}
    assert list(build.phases) == ["trace", "differentiate"]


def test_a_traced_value_and_grad_takes_the_derivative_once(monkeypatch):
    from symgrad import autodiff

    calls = []
    grad = autodiff.grad

    def counted(*args, **kwargs):
        calls.append(1)
        return grad(*args, **kwargs)

    monkeypatch.setattr(autodiff, "grad", counted)

    def loss(w, x):
        return np.sum(np.sin(x * w) ** 2)

    vg = sg.value_and_grad(loss, backend="numpy")
    w, x = 0.7, np.linspace(-1.0, 2.0, 5)
    value, dw = vg(w, x)
    assert np.isclose(value, np.sum(np.sin(x * w) ** 2), rtol=1e-13)
    assert np.isclose(dw, np.sum(2 * np.sin(x * w) * np.cos(x * w) * x), rtol=1e-13)
    assert len(calls) == 1
    assert "# sin: d/dx sin(x) = cos(x)" in vg.source  # the rule comments of that one derivative


def test_a_build_that_raises_reports_failure_and_leaves_no_build_running(capsys):
    x = sg.tensor("x", ("n",))
    sg.config(announce_after=0)
    with pytest.raises(sg.UnsupportedError, match="unknown backend 'fortran'"):
        sg.value_and_grad(sg.sum(x * x), wrt=x, backend="fortran")
    assert progress.current() is None
    assert _report(capsys.readouterr().err)[-1].startswith("symgrad: value_and_grad(wrt=[x]) failed after")


@pytest.mark.parametrize("bad", [3, -1, "1", 1.0, True, 2.5])
def test_config_refuses_a_bad_verbose(bad):
    with pytest.raises(
        sg.InputError, match=r"symgrad.config: verbose must be 0 \(silent\), 1 \(default\) or 2"
    ):
        sg.config(verbose=bad)
    assert settings._explicit == {}


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "1", False])
def test_config_refuses_a_bad_threshold(bad):
    with pytest.raises(sg.InputError, match=r"announce_after must be a number of seconds >= 0, got"):
        sg.config(announce_after=bad)


def test_config_refuses_an_unknown_setting():
    with pytest.raises(TypeError, match="unexpected keyword argument 'verbosity'"):
        sg.config(verbosity=2)


def test_a_bad_environment_variable_is_named_when_a_build_reads_it(monkeypatch):
    monkeypatch.setenv("SYMGRAD_VERBOSE", "loud")
    x = sg.tensor("x", ("n",))
    with pytest.raises(
        sg.InputError,
        match=r"environment variable SYMGRAD_VERBOSE='loud': verbose must be 0 \(silent\), 1",
    ):
        sg.value_and_grad(sg.sum(x * x), wrt=x, backend="numpy")
    with sg.config(verbose=0):  # an explicit setting does not read it
        sg.value_and_grad(sg.sum(x * x), wrt=x, backend="numpy")


def test_the_watching_thread_announces_a_build_still_running():
    import threading

    written = threading.Event()

    class Stream(io.StringIO):
        def write(self, text):
            n = super().write(text)
            written.set()
            return n

    out = Stream()
    build = progress.Build("slow", 1, 0.0, out)
    build.lines = 7
    with build.measure("numba compile"):
        assert written.wait(60)  # the build is still running: the watcher wrote the line
        assert out.getvalue() == "symgrad: compiling slow, 7 generated lines (numba compile) ...\n"
    build.finish()
    assert len(out.getvalue().splitlines()) == 2

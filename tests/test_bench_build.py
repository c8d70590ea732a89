"""`symgrad bench --suite build`: the programs are right (value against numpy, gradient against
central differences) and the harness builds each in fresh processes and prints the table. No
time is asserted."""

import contextlib
import io
import json

import numpy as np
import pytest

import symgrad as sg
from symgrad import bench_build, cli

SMALL = {"seed": None, "rosen": 6, "mlp": 5, "gmm": 9, "rnn/3": None, "euler": 12}
SMALL.update({"rnn_scan/3": None, "euler_scan": 12})  # the loops written with sg.scan


def central(loss, args, argnums, h=1e-6):
    """Central differences of loss(np, *args) with respect to the arguments ``argnums``."""
    out = []
    for k in argnums:
        base = np.asarray(args[k], dtype=np.float64)
        g = np.zeros(base.shape)
        for i in np.ndindex(base.shape):
            up, down = base.copy(), base.copy()
            up[i] += h
            down[i] -= h
            lo = list(args)
            hi = list(args)
            hi[k], lo[k] = (up if base.ndim else float(up)), (down if base.ndim else float(down))
            g[i] = (loss(np, *hi) - loss(np, *lo)) / (2 * h)
        out.append(g)
    return out


@pytest.mark.parametrize("name", list(SMALL))
def test_every_program_value_and_gradient_agree_with_numpy_and_central_differences(name):
    program = bench_build.make_program(name, size=SMALL[name])
    vg = sg.value_and_grad(program.traced_function(), program.argnums, backend="numpy")
    value, grads = vg(*program.args)
    assert np.isclose(value, program.loss(np, *program.args), rtol=1e-12)
    argnums = program.argnums if isinstance(program.argnums, tuple) else (program.argnums,)
    grads = grads if isinstance(program.argnums, tuple) else (grads,)
    for got, want in zip(grads, central(program.loss, program.args, argnums)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_full_size_programs_are_the_issues():
    mlp = bench_build.make_program("mlp")
    assert [a.shape for a in mlp.args[:4]] == [(784, 128), (128,), (128, 10), (10,)]
    assert mlp.args[4].shape == (64, 784)
    rnn = bench_build.make_program("rnn/50")
    assert rnn.args[1].shape == (8, 8) and rnn.args[4].shape[0] == 50 and rnn.scan is not None
    euler = bench_build.make_program("euler")
    assert euler.args[2].shape == (200,) and euler.scan is not None
    assert bench_build.select(["rnn"]) == ["rnn/10", "rnn/20", "rnn/50"]
    assert bench_build.select(["rnn/100", "seed"]) == ["rnn/100", "seed"]
    assert bench_build.select([]) == bench_build.NAMES


def test_an_unknown_program_is_named():
    with pytest.raises(SystemExit, match="unknown build program 'lstm'; choose from seed, rosen"):
        bench_build.select(["lstm"])


def _fake(builds):
    """A process runner that records its calls and returns made-up records (no subprocess)."""
    calls = []

    def process(name, system, cache, timeout):
        calls.append((name, system, cache))
        seconds = builds[system] if len(calls) % 3 != 2 or system == "jax" else builds["warm"]
        return {
            "program": name,
            "system": system,
            "build_s": seconds,
            "import_s": 0.4,
            "agree": True,
            "value": 2.5,
            "grad_norm": 1.5,
            # numba's machine code is ready after the first result (the numpy twin's) of a symgrad build
            **(
                {"lines": 42, "cache": "compiled, saved to cache", "numba_s": seconds + 1.0}
                if system == "symgrad"
                else {"scan": False, "numba_s": seconds}
            ),
        }

    return process, calls


def test_each_repeat_builds_cold_then_warm_on_the_same_fresh_cache_and_jax_beside():
    process, calls = _fake({"symgrad": 2.0, "warm": 0.5, "jax": 1.0})
    rec = bench_build.measure("seed", repeat=3, jax=True, process=process)
    assert [c[1] for c in calls] == ["symgrad", "symgrad", "jax"] * 3
    cold_caches = [c[2] for c in calls[0::3]]
    assert [c[2] for c in calls[1::3]] == cold_caches and len(set(cold_caches)) == 3
    assert rec["cold"]["build_s"] == 2.0 and rec["warm"]["build_s"] == 0.5 and rec["jax"]["build_s"] == 1.0
    assert rec["cold"]["numba_s"] == 3.0 and rec["warm"]["numba_s"] == 1.5
    assert rec["cold_over_jax"] == 2.0 and rec["cold_numba_over_jax"] == 3.0
    assert rec["jax"]["agree"] and rec["cold"]["lines"] == 42
    (header, rule, row) = bench_build.table([rec])
    assert header.split() == [
        "program",
        "lines",
        "cold",
        "first",
        "cold",
        "numba",
        "warm",
        "first",
        "warm",
        "numba",
        "numba",
        "import",
        "jax",
        "build",
        "first/jax",
        "numba/jax",
    ]
    assert row.split() == (
        ["seed", "42", "2.000", "s", "3.000", "s", "0.500", "s", "1.500", "s", "0.400", "s", "1.000", "s"]
        + ["2.00", "3.00"]
    )


def test_a_failed_build_and_an_absent_jax_show_in_their_cells():
    def process(name, system, cache, timeout):
        return {"error": "timed out after 5 s"}

    rec = bench_build.measure("euler", repeat=1, jax=False, process=process)
    assert rec["cold"]["status"] == "error: timed out after 5 s" and rec["jax"] == {"status": "absent"}
    row = bench_build.table([rec])[2]
    assert row.startswith("euler") and "error: timed out after 5 s" in row and row.rstrip().endswith("-")


def test_symgrad_bench_suite_build_runs_programs_in_fresh_processes_and_prints_the_table(tmp_path):
    path = tmp_path / "build.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert (
            cli.main(["bench", "--suite", "build", "seed", "--repeat", "1", "--json", str(path)]) is not None
        )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("build suite: median of 1 run(s) per cell, each build in a fresh process")
    assert lines[1].split()[:3] == ["program", "lines", "cold"]
    (row,) = [line for line in lines if line.startswith("seed")]
    (rec,) = json.loads(path.read_text())["records"]
    assert rec["program"] == "seed" and rec["cold"]["status"] == "ok" and rec["warm"]["status"] == "ok"
    assert rec["cold"]["agree"] and rec["warm"]["agree"] and "MISMATCH" not in row
    # the second process found what the first compiled
    assert rec["cold"]["cache"] == "compiled, saved to cache"
    assert rec["warm"]["cache"] == "machine code loaded from cache"
    assert rec["cold"]["lines"] == rec["warm"]["lines"] > 0
    # the first result came from the numpy twin, then numba's machine code gave the same numbers
    assert rec["cold"]["first_tier"] == "numpy" and rec["cold"]["numba_s"] >= rec["cold"]["build_s"]
    assert rec["jax"]["status"] in ("ok", "absent")


# ---------------------------------------------------------------- the small set


def test_the_small_set_has_50_functions_each_right_against_numpy_and_central_differences():
    assert len(bench_build.SMALL_FUNCTIONS) >= 50
    pool = bench_build.small_args()
    for name, (loss, argnames) in bench_build.SMALL_FUNCTIONS.items():
        args = tuple(pool[a] for a in argnames)
        vg = sg.value_and_grad(lambda *a, loss=loss: loss(np, *a), 0, backend="numpy")
        value, grad = vg(*args)
        assert np.isclose(value, loss(np, *args), rtol=1e-12), name
        (want,) = central(loss, args, (0,))
        np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_small_samples_are_spread_over_the_set_and_bad_samples_are_named():
    names = list(bench_build.SMALL_FUNCTIONS)
    assert bench_build.small_names() == names
    sample = bench_build.small_names(5)
    assert len(sample) == 5 and sample[0] == names[0] and sample[-1] in names[len(names) // 2 :]
    assert bench_build.select(["small/7", "seed"]) == ["small/7", "seed"]
    assert "small" in bench_build.select([])
    with pytest.raises(SystemExit, match="small/N takes a number of functions"):
        bench_build.select(["small/x"])


def _fake_small(jax_seconds):
    calls = []

    def process(name, system, cache, timeout):
        calls.append((name, system))
        names = name.partition(":")[2].split(",")
        seconds = 0.2 if system == "symgrad" else jax_seconds
        builds = [
            {"name": n, "build_s": seconds, "numba_s": 2 * seconds, "value": 1.0, "agree": True}
            for n in names
        ]
        return {"program": "small", "system": system, "import_s": 0.3, "builds": builds}

    return process, calls


def test_the_small_set_is_built_in_batches_beside_jax_with_median_and_p90_ratios():
    process, calls = _fake_small(0.1)
    rec = bench_build.measure_small("small/23", repeat=1, jax=True, process=process)
    assert [c[1] for c in calls] == ["symgrad", "jax"] * 3  # batches of 10, 10, 3
    assert sum(len(c[0].partition(":")[2].split(",")) for c in calls[::2]) == 23
    assert rec["count"] == 23 and len(rec["functions"]) == 23 and rec["errors"] == []
    f = rec["functions"][0]
    assert set(f) == {"name", "agree", "symgrad_s", "numba_s", "jax_s", "ratio", "numba_ratio"}
    assert f["ratio"] == pytest.approx(2.0) and f["numba_ratio"] == pytest.approx(4.0)
    assert rec["ratio_median"] == pytest.approx(2.0) and rec["ratio_p90"] == pytest.approx(2.0)
    assert rec["numba_ratio_median"] == pytest.approx(4.0) and rec["numba_ratio_p90"] == pytest.approx(4.0)
    assert rec["symgrad_median_s"] == 0.2 and rec["numba_median_s"] == 0.4 and rec["jax_median_s"] == 0.1
    lines = bench_build.small_lines(rec)
    assert lines[0].startswith("small/23: 23 small functions, cold cache")
    assert "symgrad first result median 0.200 s, numba ready 0.400 s" in lines[1]
    assert "symgrad/JAX first result median 2.00, p90 2.00; numba ready median 4.00, p90 4.00" in lines[1]


def test_without_jax_the_small_set_has_no_ratios_and_says_so():
    process, calls = _fake_small(0.1)
    rec = bench_build.measure_small("small/3", repeat=2, jax=False, process=process)
    assert [c[1] for c in calls] == ["symgrad", "symgrad"]
    assert rec["jax"] == {"status": "absent"} and "ratio_median" not in rec
    assert all("ratio" not in f and "jax_s" not in f and "numba_ratio" not in f for f in rec["functions"])
    assert "JAX is not installed: no ratios" in bench_build.small_lines(rec)[1]


def test_a_failed_batch_is_reported_and_left_out_of_the_ratios():
    def process(name, system, cache, timeout):
        return {"error": "boom"} if system == "jax" else _fake_small(0.1)[0](name, system, cache, timeout)

    rec = bench_build.measure_small("small/2", repeat=1, jax=True, process=process)
    assert rec["errors"] == ["jax l2_norm..: boom"] and "ratio_median" not in rec
    assert any("error: jax l2_norm..: boom" in line for line in bench_build.small_lines(rec))


@pytest.mark.slow
def test_symgrad_bench_suite_build_small_builds_real_functions_in_a_fresh_process(tmp_path):
    path = tmp_path / "small.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cli.main(["bench", "--suite", "build", "small/2", "--repeat", "1", "--json", str(path)])
    (rec,) = json.loads(path.read_text())["records"]
    assert rec["count"] == 2 and rec["errors"] == []
    for f in rec["functions"]:
        assert f["agree"] and f["symgrad_s"] > 0
    assert out.getvalue().splitlines()[1].startswith("small/2: 2 small functions")

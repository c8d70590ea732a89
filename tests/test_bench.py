"""`symgrad bench` runs a workload in a subprocess and writes the raw numbers (no timing is asserted)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import symgrad as sg

from symgrad import bench, bench_args


def test_bench_runs_a_tiny_workload_and_writes_the_json_fields(tmp_path):
    path = tmp_path / "bench.json"
    lines = []
    records = bench.run(
        ["seed_scalar"],
        json_path=str(path),
        repeat=1,
        peers=["sympy", "jax"],
        out=lines.append,
        progress=None,
    )
    data = json.loads(path.read_text())
    (rec,) = data["records"]
    assert rec == records[0]
    assert rec["workload"] == "seed_scalar" and rec["agree"] is True
    for field in (
        "startup_s",
        "build_s",
        "forward_s",
        "vg_s",
        "numpy_vg_s",
        "vg_over_numpy",
        "vg_over_forward",
        "cache",
        "wall_s",
    ):
        assert field in rec, field
    assert set(rec["peers"]) == {"sympy", "jax"}
    assert all("status" in info for info in rec["peers"].values())
    assert lines[0].split()[:5] == ["workload", "startup", "build", "forward", "vg"]
    assert any(line.startswith("seed_scalar") for line in lines)


def test_workload_names_select_families_and_sizes():
    assert bench.select(["rosen"]) == ["rosen/10", "rosen/1000", "rosen/1e6"]
    assert bench.select(["rosen/1e5", "xor"]) == ["rosen/1e5", "xor"]
    assert bench.select([]) == bench.NAMES


def test_every_reference_agrees_with_symgrad_on_small_sizes():
    # the numpy references (and fused loops) are what the bench checks everything against
    import symgrad as sg

    for name in ("seed_scalar", "rosen/20", "ew/50", "mlp/3", "logreg/40", "recur/5", "xor", "gp/30"):
        w = bench.make_workload(sg, name)
        want = w.by_hand(*w.args)
        vg = sg.value_and_grad(w.expr, wrt=w.wrt, inputs=w.inputs, backend="numpy")
        assert bench._agree(vg(*w.args), want), name
        if w.fused is not None:
            assert bench._agree(w.fused(*w.args), want), name


def test_per_example_workloads_agree_with_their_numpy_references_and_jax():
    # the per-example gradients (sg.vmap of sg.grad) against the numpy-by-hand backward
    import numpy as np

    import symgrad as sg

    for name in ("pe_logreg/40", "pe_mlp/3"):
        w = bench.make_workload(sg, name)
        pe = w.per_example
        want = w.by_hand(*w.args)
        loss = lambda *a, w=w: w.loss(np, *a)  # noqa: E731
        grads = sg.vmap(sg.grad(loss, argnums=pe.argnums), in_axes=pe.in_axes, backend="numpy")
        assert bench._agree(bench._only_grads(grads(*w.args)), want), name
        values = sg.vmap(loss, in_axes=pe.in_axes, backend="numpy")(*w.args)
        np.testing.assert_allclose(values, want[0], rtol=1e-12, err_msg=name)
        try:
            made = bench._peer("jax", w)
        except ImportError:
            continue
        build, wrap = made
        assert bench._agree(wrap(build())(*w.args), want), name


def test_sparse_jacobian_workload_reference_agrees_and_the_table_names_the_passes():
    import symgrad as sg

    w = bench.make_workload(sg, "rdjac/40")
    value, (J,) = w.by_hand(*w.args)
    sj = sg.sparse_jacobian(w.expr, w.wrt, w.inputs, backend="numpy")
    got_value, got_J = sj.value_and_jacobian(*w.args)
    assert bench._agree((got_value, (got_J,)), (value, (J,)))
    assert not bench._agree((got_value, (got_J * 1.01,)), (value, (J,)))  # the check sees a wrong entry
    assert sj.passes == 3 and J.nnz == 3 * 40 - 4
    record = {
        "workload": "rdjac/40",
        "agree": True,
        "startup_s": 0.1,
        "build_s": 0.2,
        "forward_s": 1e-5,
        "vg_s": 1e-4,
        "numpy_vg_s": 1e-4,
        "vg_over_numpy": 1.0,
        "vg_over_forward": 10.0,
        "jacobian_passes": 3,
        "jacobian_mode": "forward",
        "peers": {},
    }
    assert any("3 coloured forward passes" in line for line in bench.table([record], peers=[]))


def test_einsum_workloads_and_their_matmul_twins_agree_with_the_references():
    import symgrad as sg

    for name in ("bilinear/30", "attention/5"):
        w = bench.make_workload(sg, name)
        want = w.by_hand(*w.args)
        for expr in (w.expr, w.twin):
            vg = sg.value_and_grad(expr, wrt=w.wrt, inputs=w.inputs, backend="numpy")
            assert bench._agree(vg(*w.args), want), name


def test_the_table_reports_einsum_against_its_matmul_twin():
    record = {
        "workload": "bilinear/9",
        "agree": True,
        "startup_s": 0.1,
        "build_s": 0.2,
        "forward_s": 1e-4,
        "vg_s": 3e-4,
        "numpy_vg_s": 2e-4,
        "vg_over_numpy": 1.5,
        "vg_over_forward": 3.0,
        "twin_vg_s": 2.5e-4,
        "twin_agree": True,
        "vg_over_twin": 1.2,
        "peers": {},
    }
    lines = bench.table([record], peers=[])
    assert any(
        line.startswith("bilinear/9: written with einsum") and line.endswith("ratio 1.20") for line in lines
    )


def test_module_entry_point_prints_help():
    out = subprocess.run(
        [sys.executable, "-m", "symgrad.bench", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "--json" in out.stdout


def test_bench_dask_runs_on_a_local_cluster_and_agrees_with_the_in_memory_call():
    pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    from symgrad import bench_dask

    lines = []
    records = bench_dask.run(rows=20_000, chunk=6_000, features=4, workers=(1,), repeat=1, out=lines.append)
    (record,) = records
    assert record["workers"] == 1
    assert record["relative_error"] < 1e-12  # same numbers as the in-memory call
    assert record["dask_array_relative_error"] < 1e-9  # the by-hand dask.array gradient agrees
    for key in ("symgrad_seconds", "dask_array_seconds", "in_memory_seconds"):
        assert record[key] > 0
    assert any(line.startswith("| 1 |") for line in lines)


def _peer_result(peer, name):
    import symgrad as sg

    w = bench.make_workload(sg, name)
    return bench._measure_peer(peer, w, w.by_hand(*w.args), repeat=1)


@pytest.mark.parametrize("name", ["seed_scalar", "recur/10", "xor"])
def test_symengine_peer_agrees_with_the_reference(name):
    pytest.importorskip("symengine")
    result = _peer_result("symengine", name)
    # _measure_peer returns "ok" only when the peer agrees with the numpy reference
    assert result["status"] == "ok", result
    assert result["build_s"] > 0 and result["vg_s"] > 0


@pytest.mark.parametrize("name", ["seed_scalar", "xor"])
def test_pytensor_peer_agrees_with_the_reference(name):
    pytest.importorskip("pytensor")
    result = _peer_result("pytensor", name)
    assert result["status"] == "ok", result
    assert result["build_s"] > 0 and result["vg_s"] > 0


@pytest.mark.parametrize("name", ["seed_scalar", "recur/10", "xor", "rosen/10"])
def test_casadi_peer_agrees_with_the_reference(name):
    pytest.importorskip("casadi")
    result = _peer_result("casadi", name)
    assert result["status"] == "ok", result
    assert result["build_s"] > 0 and result["vg_s"] > 0


def test_scalarizing_peers_call_large_workloads_not_applicable():
    import symgrad as sg

    w = bench.make_workload(sg, "mlp/3")  # 784 x 128 weights: too many scalars
    for peer in ("symengine", "casadi"):
        try:
            assert bench._peer(peer, w) is None, peer
        except ImportError:
            pass


def test_the_new_peers_agree_through_run_case():
    for peer in ("symengine", "casadi"):
        pytest.importorskip(peer)
    rec = bench.run_case("recur/10", repeat=1, peers=["symengine", "casadi"])
    assert rec["agree"] is True
    assert {p: info["status"] for p, info in rec["peers"].items()} == {"symengine": "ok", "casadi": "ok"}


@pytest.mark.parametrize("peer", bench.PEERS)
def test_a_peer_that_cannot_be_imported_is_absent(peer, monkeypatch):
    monkeypatch.setitem(sys.modules, peer, None)  # None in sys.modules: importing it raises ImportError
    assert _peer_result(peer, "seed_scalar") == {"status": "absent"}


def test_args_suite_calls_every_kind_with_the_reference_result_and_prints_ratios():
    rows = bench_args.cases()
    reference = {}
    for function, kind, fn, args, kwargs in rows:
        value, grads = fn(*args, **kwargs)
        if kind in ("ints", "int64 array"):
            continue  # other numbers
        first = reference.setdefault(function, (value, grads))
        assert value == pytest.approx(first[0], rel=1e-6)
        np.testing.assert_allclose(
            np.concatenate([np.ravel(g) for g in grads]),
            np.concatenate([np.ravel(g) for g in first[1]]),
            rtol=1e-6,
        )
    assert {"seed", "rosen/1e3"} == set(reference)
    records = [{"function": "seed", "kind": "keywords", "seconds": 2e-6, "ratio": 1.5}]
    assert bench_args.table(records)[-1] == "| seed | keywords | 2.00 µs | 1.50 |"


def test_args_suite_floors_are_the_seeds_positional_call_plus_pythons_and_numpys_parts(monkeypatch):
    # each floor is the positional call plus what its statements cost (the timer is replaced)
    costs = {"kw": 3e-7, "pos": 1e-7, "float(a); a.dtype": 5e-8, "float(f); f": 2e-8}
    monkeypatch.setattr(
        bench_args, "_seconds", lambda fn, args, kwargs, repeat: costs["kw" if kwargs else "pos"]
    )
    monkeypatch.setattr(bench_args, "_statement_seconds", lambda statement, names, repeat: costs[statement])
    (kw, kw_s), (zero_d, zero_d_s) = bench_args.floors(4e-7, repeat=1)
    assert kw.startswith("keywords: CPython's floor") and kw_s == pytest.approx(4e-7 + 2e-7)
    assert zero_d.startswith("0-d arrays: numpy's floor") and zero_d_s == pytest.approx(4e-7 + 2 * 3e-8)
    assert bench_args._NoOp()(x=0.7, y=-1.3) is None


def test_a_peer_without_a_spelling_the_loss_needs_is_n_a_not_an_error(monkeypatch):
    import types

    stand_in = types.SimpleNamespace(__name__="pytensor.tensor")
    with pytest.raises(bench.PeerLacks, match="no cho_solve in 'pytensor.tensor'"):
        bench._cho_solve(stand_in, None, None)

    def build():
        return bench._cho_solve(stand_in, None, None)

    monkeypatch.setattr(bench, "_peer", lambda peer, w: (build, lambda f: f))
    w = bench.make_workload(bench.sg, "seed_scalar")
    assert bench._measure_peer("pytensor", w, None, 1) == {"status": "n/a"}


def test_threads_suite_compares_one_thread_with_all_and_finds_the_same_bits(tmp_path, monkeypatch):
    from symgrad import bench_threads

    monkeypatch.setattr(bench_threads, "thread_counts", lambda: (1, 2))
    monkeypatch.setattr(bench_threads, "CALLS_PER_ROUND", 1)
    path = tmp_path / "threads.json"
    before = sg.config()["threads"]
    lines = []
    # 2e5 rows: above codegen.threads.MIN_ROWS, so the row blocks run on the threads
    records = bench_threads.run(
        bench.make_workload, ["rosen/2e5"], repeat=1, json_path=str(path), out=lines.append
    )
    data = json.loads(path.read_text())
    assert data["suite"] == "threads" and data["records"] == records
    (rec,) = records
    assert rec["workload"] == "rosen/2e5" and rec["threads"] == [1, 2]
    for label in ("vg", "forward"):
        assert rec[label]["same_bits"] is True
        assert set(rec[label]["seconds"]) == {"1", "2"} and rec[label]["speedup"] > 0
    assert lines[0] == "| workload | function | 1 thread | 2 threads | speedup | same bits |"
    assert lines[2].startswith("| rosen/2e5 | vg | ") and lines[2].endswith(" | yes |")
    assert sg.config()["threads"] == before  # the suite's settings are gone afterwards


def test_threads_suite_bit_comparison_sees_one_ulp_and_a_changed_shape():
    from symgrad import bench_threads

    a = (1.0, (np.array([1.0, 2.0]),))
    assert bench_threads._same_bits(a, (1.0, (np.array([1.0, 2.0]),)))
    assert not bench_threads._same_bits(a, (1.0, (np.array([1.0, np.nextafter(2.0, 3.0)]),)))
    assert not bench_threads._same_bits(a, (1.0, (np.array([[1.0, 2.0]]),)))
    assert not bench_threads._same_bits(a, (np.nextafter(1.0, 0.0), (np.array([1.0, 2.0]),)))


def test_threads_suite_on_one_thread_says_there_is_nothing_to_compare(monkeypatch):
    from symgrad import bench_threads

    monkeypatch.setattr(bench_threads, "thread_counts", lambda: (1, 1))
    lines = []
    assert bench_threads.run(bench.make_workload, out=lines.append) == []
    assert lines == [
        "symgrad bench --suite threads: numba has one thread here (NUMBA_NUM_THREADS=1); nothing to compare"
    ]


def test_a_suite_report_prints_its_table_and_writes_its_records(tmp_path):
    from symgrad.bench_output import report

    path, lines = tmp_path / "suite.json", []
    records = [{"function": "seed", "seconds": 1e-6}]
    assert (
        report("args", records, ["| a |", "| b |"], repeat=3, json_path=str(path), out=lines.append)
        is records
    )
    assert lines == ["| a |", "| b |"]
    assert json.loads(path.read_text()) == {"suite": "args", "repeat": 3, "records": records}
    assert (
        report("args", records, [], repeat=3, json_path=None, out=lines.append) is records and len(lines) == 2
    )

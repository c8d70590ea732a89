"""value_and_grad over Dask arrays (symgrad.dask_arrays, symgrad.decompose): on a real
LocalCluster of two worker processes on loopback and on Dask's threaded scheduler, against
the in-memory call on the same data and a logistic-regression gradient written in numpy."""

import functools
import os
import signal
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from scipy.special import expit  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.errors import InputError, UnsupportedError  # noqa: E402

RTOL = 1e-12


@pytest.fixture(scope="module")
def client():
    """Two worker processes (with nannies), loopback only; not the default client, so a test
    runs on the cluster only inside ``client.as_current()``."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(params=["cluster", "threads"])
def scheduler(request):
    """Run the test on the cluster (a current distributed client) or on Dask's threaded
    scheduler (no client at all)."""
    if request.param == "threads":
        with pytest.raises(ValueError):
            distributed.default_client()
        yield None
        return
    c = request.getfixturevalue("client")
    with c.as_current():
        yield c


def persisted(client, *arrays):
    """``arrays`` computed and held on the cluster's workers."""
    with client.as_current():
        held = client.persist(list(arrays))
        distributed.wait(held)
    return held


def assert_same(got, want, rtol=RTOL):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, np.finfo(float).tiny)
    assert float(np.max(np.abs(got - want), initial=0.0)) <= rtol * scale, (got, want)


def assert_same_value_and_grads(got, want):
    assert_same(got[0], want[0])
    assert len(got[1]) == len(want[1])
    for g, w in zip(got[1], want[1]):
        assert_same(g, w)


# ---------------------------------------------------------------- the models


def logreg_loss(reg=1e-3):
    X = sg.tensor("X", ("n", "d"))
    y = sg.tensor("y", ("n",))
    w = sg.tensor("w", ("d",))
    return sg.mean(sg.logaddexp(0, -y * (X @ w))) + reg * (w @ w), [w], [w, X, y]


@functools.cache  # compiled once per session
def logreg():
    loss, wrt, inputs = logreg_loss()
    return sg.value_and_grad(loss, wrt=wrt, inputs=inputs)


def logreg_numpy(w, X, y, reg=1e-3):
    """The loss and its gradient by hand: d/dz log(1 + e^z) = sigmoid(z)."""
    z = -y * (X @ w)
    value = np.mean(np.logaddexp(0, z)) + reg * (w @ w)
    grad = X.T @ (-y * expit(z)) / len(y) + 2 * reg * w
    return value, grad


# the row-block machinery does not depend on the backend; numba (the default) is exercised by
# the logistic regression, and the MLP's numba compiles would take half this file's time
MLP_BACKEND = "numpy"


def _mlp_parts():
    X = sg.tensor("X", ("n", "d"))
    W1, b1 = sg.tensor("W1", ("d", "h")), sg.tensor("b1", ("h",))
    W2, b2 = sg.tensor("W2", ("h", "k")), sg.tensor("b2", ("k",))
    logp = sg.log_softmax(sg.tanh(X @ W1 + b1) @ W2 + b2, axis=1)
    return X, [W1, b1, W2, b2], logp


@functools.cache  # compiled once per session
def mlp_onehot():
    X, params, logp = _mlp_parts()
    T = sg.tensor("T", ("n", "k"))
    loss = -sg.mean(sg.sum(T * logp, axis=1))
    return sg.value_and_grad(loss, wrt=params, inputs=params + [X, T], backend=MLP_BACKEND)


@functools.cache  # compiled once per session
def mlp_labels():
    X, params, logp = _mlp_parts()
    labels = sg.tensor("labels", ("n",), dtype="int64")
    loss = -sg.mean(logp[sg.arange(X.shape[0]), labels])
    return sg.value_and_grad(loss, wrt=params, inputs=params + [X, labels], backend=MLP_BACKEND)


N, D, H, K = 30, 5, 4, 3
CHUNKINGS = {"even": 10, "uneven_last": 12, "one_chunk": N, "single_rows": 1}


def model_data(model, seed=0):
    """(vg, parameters, row data as numpy) for one of the models above."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    if model == "logreg":
        return logreg(), [rng.normal(size=D)], [X, np.sign(rng.normal(size=N))]
    params = [rng.normal(size=s) * 0.5 for s in [(D, H), (H,), (H, K), (K,)]]
    labels = rng.integers(0, K, N)
    if model == "mlp_onehot":
        return mlp_onehot(), params, [X, np.eye(K)[labels]]
    return mlp_labels(), params, [X, labels]


def chunked(rows, size):
    return [da.from_array(a, chunks=(size,) + a.shape[1:]) for a in rows]


# ---------------------------------------------------------------- models over chunkings


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("model", ["logreg", "mlp_onehot", "mlp_labels"])
def test_models_over_dask_chunks_equal_the_in_memory_call(model, chunking, scheduler):
    vg, params, rows = model_data(model)
    want = vg(*params, *rows)
    got = vg(*params, *chunked(rows, CHUNKINGS[chunking]))
    assert_same_value_and_grads(got, want)
    if model == "logreg":
        value, grad = logreg_numpy(params[0], *rows)
        assert_same(got[0], value)
        assert_same(got[1][0], grad)


def test_numpy_row_data_mixed_with_dask_takes_the_dask_chunks():
    vg, params, (X, y) = model_data("logreg", seed=1)
    got = vg(*params, da.from_array(X, chunks=(25, D)), y)
    value, grad = logreg_numpy(params[0], X, y)
    assert_same(got[0], value)
    assert_same(got[1][0], grad)


# ---------------------------------------------------------------- what splits over rows

x = sg.tensor("x", ("n",))
Xs = sg.tensor("X", ("n", "d"))
counts = sg.tensor("counts", ("n",), dtype="int64")
w = sg.scalar("w")
v = sg.tensor("v", ("d",))

AFFINE = {
    "sum_times_parameter": (sg.sum(x * w) * w, [w], [w, x]),
    "where_on_parameter": (sg.where(w > 0, sg.sum(sg.exp(x * w)), 2 * sg.sum(x)), [w], [w, x]),
    "mean_plus_regulariser": (sg.mean(sg.logaddexp(0, x * w)) + 0.5 * w**2, [w], [w, x]),
    "row_contraction": ((sg.tanh(Xs @ v) @ Xs) @ v + sg.sum(v * v), [v], [v, Xs]),
    "int_sum_over_rows": (sg.sum(counts) * w + sg.mean(x * w), [w], [w, x, counts]),
}


@pytest.mark.parametrize("case", AFFINE)
def test_affine_combinations_of_sums_over_rows_split(case, scheduler):
    loss, wrt, inputs = AFFINE[case]
    vg = sg.value_and_grad(loss, wrt=wrt, inputs=inputs, backend="numpy")
    rng = np.random.default_rng(2)
    data = {
        "w": 0.7,
        "v": rng.normal(size=3),
        "x": rng.normal(size=23),
        "X": rng.normal(size=(23, 3)),
        "counts": rng.integers(-5, 9, 23),
    }
    args = [data[s.name] for s in inputs]
    want = vg(*args)
    lazy = [
        da.from_array(a, chunks=(7,) + a.shape[1:]) if s.ndim and str(s.shape[0]) == "n" else a
        for s, a in zip(inputs, args)
    ]
    assert_same_value_and_grads(vg(*lazy), want)
    if case == "int_sum_over_rows":  # d/dw = sum(counts) + mean(x), by hand
        assert_same(want[1][0], data["counts"].sum() + data["x"].mean())


idx = sg.tensor("idx", ("m",), dtype="int64")
COUPLED = {
    "product of two sums": (sg.sum(x * w) * sg.sum(x * w), r"a product of two sums over rows \(mul in"),
    "shift": (sg.sum((x[1:] - x[:-1]) * w), r"indexing selects some of the rows \(getitem in"),
    "max over rows": (sg.max(x * w), r"a max over the rows .*\(max in"),
    "centred inside a row term": (
        sg.sum((x - sg.mean(x)) ** 2 * w),
        r"a sum over rows is used inside a per-row term \(sub in",
    ),
    "sqrt of a sum": (sg.sqrt(sg.sum(x * x * w)), r"sqrt of a sum over rows .*\(sqrt in"),
    "gather rows": (sg.sum(Xs[idx] * w), r"gathering rows by index \(take0 in"),
}


@pytest.mark.parametrize("case", COUPLED)
def test_losses_coupling_rows_are_rejected_naming_the_op(case):
    loss, message = COUPLED[case]
    inputs = [w, x] if case != "gather rows" else [w, idx, Xs]
    vg = sg.value_and_grad(loss, wrt=[w], inputs=inputs, backend="numpy")
    data = {
        "w": 1.0,
        "x": da.ones(10, chunks=5),
        "X": da.ones((10, 2), chunks=(5, 2)),
        "idx": np.array([3, 1]),
    }
    with pytest.raises(UnsupportedError, match=message) as info:
        vg(*[data[s.name] for s in inputs])
    assert "does not split over the rows" in str(info.value)


# ---------------------------------------------------------------- errors


@pytest.fixture
def logreg_rows():
    vg, (w0,), (X, y) = model_data("logreg", seed=3)
    return vg, w0, X, y


def test_dask_array_of_the_wrong_rank_is_an_input_error(logreg_rows):
    vg, w0, X, y = logreg_rows
    with pytest.raises(InputError, match=rf"'X' must have rank 2, got a Dask array of shape \({N},\)"):
        vg(w0, da.from_array(y, chunks=20), da.from_array(y, chunks=20))
    with pytest.raises(InputError, match=rf"'y' must have rank 1, got a Dask array of shape \({N}, 1\)"):
        vg(w0, da.from_array(X, chunks=(20, D)), da.from_array(y[:, None], chunks=(20, 1)))


@pytest.mark.parametrize("dtype", ["complex128", "object"])
def test_dask_array_of_a_dtype_that_does_not_convert_is_an_input_error(logreg_rows, dtype):
    vg, w0, X, y = logreg_rows
    message = f"'X' must hold float64 values, got a Dask array of dtype {dtype}"
    with pytest.raises(InputError, match=message):
        vg(w0, da.from_array(X.astype(dtype), chunks=(20, D)), da.from_array(y, chunks=20))


def test_row_counts_that_differ_between_arguments_are_an_input_error(logreg_rows):
    vg, w0, X, y = logreg_rows
    Xd = da.from_array(X, chunks=(20, D))
    with pytest.raises(InputError, match=f"'y': dimension 0 is {N - 1}, but 'X' has {N} rows"):
        vg(w0, Xd, da.from_array(y[:-1], chunks=20))
    with pytest.raises(InputError, match=f"'y': dimension 0 is {N - 1}, but 'X' has {N} rows"):
        vg(w0, Xd, y[:-1])


def test_unknown_chunk_sizes_are_an_input_error(logreg_rows):
    vg, w0, X, y = logreg_rows
    Xd, yd = da.from_array(X, chunks=(20, D)), da.from_array(y, chunks=20)
    keep = Xd[:, 0] > 0
    with pytest.raises(InputError, match=r"chunk sizes are unknown; call X.compute_chunk_sizes\(\)"):
        vg(w0, Xd[keep], yd[keep])


def test_differentiating_a_row_chunked_input_is_unsupported():
    loss, (w_,), (_, X, y) = logreg_loss()
    vg = sg.value_and_grad(loss, wrt=[w_, X], inputs=[w_, X, y], backend="numpy")
    with pytest.raises(UnsupportedError, match="X is split into row blocks .* and differentiated"):
        vg(np.zeros(2), da.ones((4, 2), chunks=(2, 2)), da.ones(4, chunks=2))


def test_chunks_along_axis_1_are_rechunked_with_a_warning(logreg_rows):
    vg, w0, X, y = logreg_rows
    with pytest.warns(RuntimeWarning, match="'X' is chunked along axis 1 or later .* rechunking"):
        got = vg(w0, da.from_array(X, chunks=(20, 2)), da.from_array(y, chunks=20))
    assert_same_value_and_grads(got, vg(w0, X, y))


def test_chunks_along_axis_1_too_large_to_rechunk_are_an_input_error(logreg_rows, monkeypatch):
    vg, w0, X, y = logreg_rows
    monkeypatch.setenv("SYMGRAD_DASK_MAX_BLOCK_BYTES", "256")
    with pytest.raises(
        InputError,
        match="would take 800 bytes, more than the limit of 256 bytes "
        r"\(SYMGRAD_DASK_MAX_BLOCK_BYTES\)",
    ):
        vg(w0, da.from_array(X, chunks=(20, 2)), da.from_array(y, chunks=20))


def test_first_dimension_given_as_a_number_must_be_named():
    X = sg.tensor("X", (8, 2))
    y = sg.tensor("y", (8,))
    w_ = sg.tensor("w", (2,))
    vg = sg.value_and_grad(sg.mean((X @ w_ - y) ** 2), wrt=[w_], inputs=[w_, X, y], backend="numpy")
    with pytest.raises(UnsupportedError, match="first dimension is 8, not a name: declare it by name"):
        vg(np.zeros(2), da.ones((8, 2), chunks=(4, 2)), da.ones(8, chunks=4))


def test_dask_array_passed_to_a_compiled_function_is_an_input_error():
    f = sg.compile(sg.sum(x * w), inputs=[w, x], backend="numpy")
    with pytest.raises(InputError, match="functions made by sg.value_and_grad"):
        f(1.0, da.ones(10, chunks=5))


# ---------------------------------------------------------------- the kernel on the workers


def test_block_kernel_is_loaded_once_per_worker_not_per_task(client):
    vg = logreg()
    rng = np.random.default_rng(4)
    X, y, w0 = rng.normal(size=(400, 3)), np.sign(rng.normal(size=400)), rng.normal(size=3)
    want = logreg_numpy(w0, X, y)
    Xd, yd = persisted(client, da.from_array(X, chunks=(10, 3)), da.from_array(y, chunks=10))
    assert len({a for ws in client.who_has(Xd).values() for a in ws}) == 2  # blocks on both

    def count_loads():
        """On a worker: record the sources symgrad.dask_arrays loads from now on."""
        import symgrad.dask_arrays as module

        real = getattr(module, "_real_load_module", module.load_module)
        module._real_load_module, module._sources_loaded = real, []
        module.BlockKernel._loaded.clear()  # as if the worker were new

        def counting(source, backend):
            module._sources_loaded.append(source)
            return real(source, backend)

        module.load_module = counting

    def stop_counting():
        import symgrad.dask_arrays as module

        module.load_module = module._real_load_module

    client.run(count_loads)
    try:
        with client.as_current():
            for _ in range(2):
                got = vg(w0, Xd, yd)
                assert_same(got[0], want[0])
                assert_same(got[1][0], want[1])
                (split,) = vg._dask["splits"].values()
                source = split.block.source

                def report():
                    import symgrad.dask_arrays as module

                    held = [key for key in module.BlockKernel._loaded if source in key]
                    return len(held), module._sources_loaded.count(source)

                # 40 blocks over two workers: one load on each, none on the second call
                assert list(client.run(report).values()) == [(1, 1), (1, 1)]
    finally:
        client.run(stop_counting)


# ---------------------------------------------------------------- parameters are scattered


def _task_arrays(obj, found, depth=0):
    """numpy arrays held anywhere inside a task spec (args, kwargs, literal data nodes)."""
    if depth > 50:
        return
    if isinstance(obj, np.ndarray):
        found.append(obj)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            _task_arrays(item, found, depth + 1)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            _task_arrays(item, found, depth + 1)
        return
    for attr in ("args", "kwargs", "value"):
        inner = getattr(obj, attr, None)
        if inner is not None and not callable(inner):
            _task_arrays(inner, found, depth + 1)


@pytest.mark.parametrize("held", [True, False], ids=["persisted_rows", "rows_in_the_graph"])
def test_parameters_reach_each_worker_once_per_call_not_once_per_block(client, monkeypatch, held):
    # an embedding table E (1.6 MB) gathered per row: the large parameter of the call
    E = sg.tensor("E", ("V",))
    ids = sg.tensor("ids", ("n",), dtype="int64")
    loss = sg.mean((x * w + E[ids]) ** 2) + 1e-3 * sg.sum(E * E)
    vg = sg.value_and_grad(loss, wrt=[w, E], inputs=[w, E, x, ids], backend="numpy")
    rng = np.random.default_rng(5)
    table, xs, ids_n = rng.normal(size=200_000), rng.normal(size=800), rng.integers(0, 200_000, 800)
    want = vg(0.3, table, xs, ids_n)
    xd, idsd = da.from_array(xs, chunks=50), da.from_array(ids_n, chunks=50)
    if held:
        xd, idsd = persisted(client, xd, idsd)

    scattered, graphs, submitted = [], [], []
    real_scatter, real_compute, real_submit = client.scatter, dask.compute, client.submit

    def scatter(data, *args, **kwargs):
        futures = real_scatter(data, *args, **kwargs)
        # where the data is as the call goes on (Dask may drop replicas once it is done)
        scattered.append((data, kwargs, futures, client.who_has(futures)))
        return futures

    def compute(*collections, **kwargs):
        graphs.append([dict(c.__dask_graph__()) for c in collections])
        return real_compute(*collections, **kwargs)

    def submit(fn, *args, **kwargs):
        submitted.append((fn, args))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    monkeypatch.setattr(client, "submit", submit)
    monkeypatch.setattr(dask, "compute", compute)
    with client.as_current():
        got = vg(0.3, table, xd, idsd)
    assert_same_value_and_grads(got, want)

    if held:
        # one task per worker thread (two workers, one thread each), each carrying the table
        # once and running the 8 blocks of 50 rows its worker holds: no scatter, no graph
        assert scattered == [] and graphs == []
        assert len(submitted) == 2
        blocks = []
        for fn, args in submitted:
            assert fn.__name__ == "_run_blocks"
            arrays = []
            _task_arrays(args, arrays)
            assert sum(a is table for a in arrays) == 1
            assert all(a is table or a.nbytes < table.nbytes // 100 for a in arrays)
            blocks.append(sum(isinstance(a, distributed.Future) for a in args) // 2)
        assert sorted(blocks) == [8, 8]
        return

    # one task per block of 50 rows, in the graph that reads the rows; the table is in one
    # node of it, which all 16 depend on, and no task carries it (or any array as large)
    assert scattered == [] and submitted == []
    ((graph,),) = graphs
    holding = []
    for key, task in graph.items():
        found = []
        _task_arrays(task, found)
        if any(a is table for a in found):
            holding.append(key)
        else:
            assert all(a.nbytes < table.nbytes // 100 for a in found), (key, [a.shape for a in found])
    (table_key,) = holding
    assert sum(table_key in getattr(t, "dependencies", ()) for t in graph.values()) == 16


# ---------------------------------------------------------------- blocks run where they are held


def test_persisted_blocks_run_on_the_workers_holding_them_one_task_per_worker(client):
    vg = logreg()
    X, y, Xd, yd = logreg_blocks(client, blocks=12, rows=500, seed=8)
    holders = client.who_has(Xd)
    assert len({a for ws in holders.values() for a in ws}) == 2  # blocks on both
    want = vg(np.full(16, 0.1), X, y)
    from symgrad.dask_arrays import _groups_by_worker, _held_chunks

    (chunks,) = _held_chunks([Xd], client)
    # a block goes to a worker not holding it only where the data sits unevenly
    plan = _groups_by_worker(client, [chunks], Xd.chunks[0])
    expected = {c.key: set(holders[c.key]) for c in chunks}
    for blocks, address in plan:
        for i in blocks:
            expected[chunks[i].key].add(address)
    with client.as_current(), distributed.get_task_stream() as stream:
        got = vg(np.full(16, 0.1), Xd, yd)
    assert_same_value_and_grads(got, want)
    runs = [t for t in stream.data if str(t["key"]).startswith("_run_blocks")]
    assert sorted(t["worker"] for t in runs) == sorted(client.nthreads())
    assert len(stream.data) == len(runs) == 2  # and no task adding partial results
    # each run ran on its worker: no block of X was fetched but those the plan moved (a
    # fetched chunk stays on the worker that fetched it, as a copy)
    assert {key: set(where) for key, where in client.who_has(Xd).items()} == expected


def test_blocks_all_held_by_one_worker_are_shared_with_the_other(client):
    vg = logreg()
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(1200, 16)), np.sign(rng.normal(size=1200))
    first = sorted(client.nthreads())[0]
    with client.as_current():
        Xd, yd = client.persist(
            [da.from_array(X, chunks=(100, 16)), da.from_array(y, chunks=100)], workers=[first]
        )
        distributed.wait([Xd, yd])
    assert {a for ws in client.who_has(Xd).values() for a in ws} == {first}
    want = vg(np.full(16, 0.1), X, y)
    with client.as_current(), distributed.get_task_stream() as stream:
        got = vg(np.full(16, 0.1), Xd, yd)
    assert_same_value_and_grads(got, want)
    runs = [t for t in stream.data if str(t["key"]).startswith("_run_blocks")]
    assert sorted(t["worker"] for t in runs) == sorted(client.nthreads())


def test_a_worker_with_two_threads_gets_one_task_per_thread():
    vg = logreg()
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(4000, 16)), np.sign(rng.normal(size=4000))
    want = vg(np.full(16, 0.1), X, y)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as two_threads,
        two_threads.as_current(),
    ):
        Xd, yd = persisted(two_threads, da.from_array(X, chunks=(500, 16)), da.from_array(y, chunks=500))
        with distributed.get_task_stream(two_threads) as stream:
            got = vg(np.full(16, 0.1), Xd, yd)
    assert_same_value_and_grads(got, want)
    runs = [t for t in stream.data if str(t["key"]).startswith("_run_blocks")]
    assert len(runs) == 2 and len(stream.data) == 2  # four blocks each (the plan's test below)


class _Placement:
    """What _groups_by_worker asks a client: threads per worker and who holds which chunk."""

    def __init__(self, threads, holders):
        self.threads, self.holders = threads, holders

    def nthreads(self):
        return dict(self.threads)

    def who_has(self, futures):
        return {f.key: self.holders[f.key] for f in futures if f.key in self.holders}


class _Chunk:
    def __init__(self, key):
        self.key = key


@pytest.mark.parametrize(
    "threads, holders, rows, runs",
    [
        # held evenly: every worker runs what it holds
        ({"a": 1, "b": 1}, "abab", [5] * 4, [([0, 2], "a"), ([1, 3], "b")]),
        # all on one worker: the other takes its share (the later blocks)
        ({"a": 1, "b": 1}, "aaaa", [5] * 4, [([0, 1], "a"), ([2, 3], "b")]),
        # threads: one run per thread, about equal rows
        ({"a": 2, "b": 1}, "aaaaab", [5] * 6, [([0, 1], "a"), ([2, 3], "a"), ([4, 5], "b")]),
        # uneven blocks: shares by rows, not by blocks
        ({"a": 1, "b": 1}, "abbb", [30, 10, 10, 10], [([0], "a"), ([1, 2, 3], "b")]),
        # a chunk held nowhere (lost, being recomputed) or on both goes where there is room
        ({"a": 1, "b": 1}, ["a", "a", "", "ab"], [5] * 4, [([0, 1], "a"), ([2, 3], "b")]),
        # one worker, one block
        ({"a": 1}, "a", [7], [([0], "a")]),
        # no rows at all
        ({"a": 1, "b": 1}, "ab", [0, 0], [([0], "a"), ([1], "b")]),
        # no worker at the moment: no runs (the call falls back to a graph, which waits for one)
        ({}, "a", [7], []),
    ],
)
def test_blocks_are_shared_by_rows_in_proportion_to_threads(threads, holders, rows, runs):
    from symgrad.dask_arrays import _groups_by_worker

    chunks = [_Chunk(("X", i)) for i in range(len(rows))]
    placement = _Placement(threads, {c.key: tuple(h) for c, h in zip(chunks, holders)})
    assert _groups_by_worker(placement, [chunks], rows) == runs


# ---------------------------------------------------------------- L-BFGS on 2e6 rows


def logreg_blocks(client, blocks, rows, seed, d=16, persist=True):
    """A logistic-regression data set of ``blocks`` row blocks: made on the workers and kept
    there (Dask arrays; or, with ``persist=False``, made again by every computation), and the
    same rows made here (numpy), without shipping the data."""

    def make_block(i):
        """Row block ``i``, the same wherever it is made (a closure, so it travels by value)."""
        w_true = np.random.default_rng(seed).normal(size=d)
        rng = np.random.default_rng([seed, i])
        X = rng.uniform(-2.0, 2.0, size=(rows, d))
        return X, np.sign(X @ w_true + rng.normal(size=rows))

    made = [dask.delayed(make_block, pure=True)(i) for i in range(blocks)]
    Xd = da.concatenate([da.from_delayed(b[0], (rows, d), np.float64) for b in made])
    yd = da.concatenate([da.from_delayed(b[1], (rows,), np.float64) for b in made])
    if persist:
        Xd, yd = persisted(client, Xd, yd)
    X, y = np.empty((blocks * rows, d)), np.empty(blocks * rows)
    for i in range(blocks):
        X[i * rows : (i + 1) * rows], y[i * rows : (i + 1) * rows] = make_block(i)
    return X, y, Xd, yd


def test_lbfgs_on_two_million_rows_converges_to_the_in_memory_solution(client):
    X, y, Xd, yd = logreg_blocks(client, blocks=8, rows=250_000, seed=7)  # 256 MB each
    vg = logreg()
    w0 = np.zeros(X.shape[1])  # every margin ties at 0: logaddexp's gradient there is 1/2
    in_memory = minimize(vg.scipy(), w0, jac=True, args=(X, y), method="L-BFGS-B")
    with client.as_current():
        on_cluster = minimize(vg.scipy(), w0, jac=True, args=(Xd, yd), method="L-BFGS-B")
    assert in_memory.success and on_cluster.success
    assert abs(on_cluster.nit - in_memory.nit) <= 1, (on_cluster.nit, in_memory.nit)
    np.testing.assert_allclose(on_cluster.x, in_memory.x, rtol=0, atol=1e-6)
    assert on_cluster.fun == pytest.approx(in_memory.fun, rel=1e-10)
    _, grad = logreg_numpy(on_cluster.x, X, y)
    assert np.max(np.abs(grad)) < 1e-4


def test_a_parameter_passed_as_a_dask_array_is_refused_naming_both_dimensions():
    vg = logreg()
    X0, y0 = np.ones((6, 3)), np.ones(6)
    with pytest.raises(
        UnsupportedError,
        match=r"counted differently: w by d; X, y by n .*pass "
        r"parameters as numpy arrays",
    ):
        vg(da.from_array(np.ones(3), chunks=2), da.from_array(X0, chunks=(3, 3)), da.from_array(y0, chunks=3))


# ---------------------------------------------------------------- a worker killed mid-call


@pytest.mark.parametrize("persist", [True, False], ids=["persisted_rows", "rows_in_the_graph"])
def test_worker_killed_mid_call_gives_the_right_result_or_an_error_and_the_cluster_recovers(client, persist):
    vg = logreg()
    # 80 blocks: persisted, a call is one task per worker; in the graph, ~250 tasks
    X, y, Xd, yd = logreg_blocks(client, blocks=80, rows=1000, seed=6, persist=persist)
    w0 = np.random.default_rng(6).normal(size=16)
    want = vg(w0, X, y)
    before = client.run(os.getpid)

    calls, started, stop = [], threading.Event(), threading.Event()

    def call_until_stopped():
        with client.as_current():
            while not stop.is_set():
                begun = time.monotonic()
                started.set()
                try:
                    outcome = ("value", vg(w0, Xd, yd))
                except Exception as exc:  # noqa: BLE001 - judged below
                    outcome = ("error", exc)
                calls.append((begun, time.monotonic()) + outcome)

    runner = threading.Thread(target=call_until_stopped, daemon=True)
    runner.start()
    assert started.wait(30)
    time.sleep(0.2)
    victim_address, victim_pid = sorted(before.items())[0]
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    stop.set()  # the call under way is the last one
    runner.join(60)
    assert not runner.is_alive(), "a call hung after the worker was killed"

    assert calls and calls[-1][1] > killed_at
    for _, _, kind, result in calls:
        if kind == "value":  # never a wrong number
            assert_same_value_and_grads(result, want)
        else:
            assert isinstance(result, Exception)

    # the nanny restarts the worker; with two again, the cluster computes the right numbers
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = client.scheduler_info()["workers"]
        if len(workers) == 2 and victim_address not in workers:
            break
        time.sleep(0.1)
    after = client.run(os.getpid)
    assert len(after) == 2 and victim_pid not in after.values()
    with client.as_current():
        assert_same_value_and_grads(vg(w0, Xd, yd), want)


@pytest.mark.parametrize(
    "blocks, adds, depth", [(1, 0, 0), (2, 1, 1), (8, 1, 1), (9, 2, 2), (10, 3, 2), (64, 9, 2), (65, 10, 3)]
)
def test_partials_are_added_eight_at_a_time_in_a_shallow_tree(blocks, adds, depth):
    from symgrad.dask_arrays import FAN_IN, _add_partials, _tree_sum

    assert FAN_IN == 8
    parts = [dask.delayed((float(k), np.full(3, k + 0.5)), pure=True) for k in range(blocks)]
    (total,) = _tree_sum(parts, dask.delayed(_add_partials, pure=True))
    value, vector = dask.compute(total, scheduler="sync")[0]
    assert value == sum(range(blocks))
    np.testing.assert_array_equal(vector, np.full(3, sum(k + 0.5 for k in range(blocks))))
    graph = dict(total.__dask_graph__())
    is_add = {key: str(key).startswith("_add_partials") for key in graph}
    assert sum(is_add.values()) == adds

    def levels(key):
        inner = [d for d in dask.core.get_dependencies(graph, key) if d in graph]
        return int(is_add[key]) + max((levels(d) for d in inner), default=0)

    assert levels(total.key) == depth

"""``symgrad bench --dask``: logistic regression over Dask arrays on a local cluster.

For 1 and 2 worker processes (one thread each), on data persisted on the workers
(10^7 rows x 16 by default, chunked in 10^6 rows), the median seconds per
value-and-grad call of

- symgrad: the compiled ``value_and_grad`` called with the Dask arrays;
- dask.array: the same loss and gradient written in ``dask.array`` operations, as
  dask-glm writes them (``X.dot(w)``, ``X.T.dot(...)``), computed together;

next to the same symgrad function on the numpy arrays in this one process (the
in-memory time). The three are called in turn, so that all see the same machine.
Every result is checked against the in-memory one.

    symgrad bench --dask
    symgrad bench --dask --rows 1e6 --chunk 1e5 --workers 1,2
"""

import statistics
import time

import numpy as np

import symgrad as sg

LAMBDA = 1e-3


def _median_seconds(fns, repeat):
    """The median seconds of each of ``fns``, called in turn ``repeat`` times (after one call
    each), so that a slow spell of a shared machine falls on all of them alike."""
    for fn in fns:
        fn()
    runs = [[] for _ in fns]
    for _ in range(repeat):
        for fn, times in zip(fns, runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in runs]


def _dask_array_value_and_grad(w, X, y, n):
    """The gradient by hand in dask.array operations, as dask-glm writes its models."""
    import dask
    import dask.array as da

    margin = -y * X.dot(w)
    value = da.logaddexp(0, margin).sum() / n + LAMBDA * (w @ w)
    weight = -y / (1 + da.exp(-margin))  # d/dmargin logaddexp(0, margin) = sigmoid(margin)
    grad = X.T.dot(weight) / n + 2 * LAMBDA * w
    return dask.compute(value, grad)


def run(rows=10**7, chunk=10**6, features=16, workers=(1, 2), repeat=5, out=print):
    """Run the benchmark; returns one record per worker count (and prints a table)."""
    import dask.array as da
    from distributed import Client, LocalCluster

    sg.config(compile="sync")  # the calls timed are numba's machine code's
    X, y, w = sg.tensor("X", ("n", "d")), sg.tensor("y", ("n",)), sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0, -y * (X @ w))) + LAMBDA * sg.sum(w * w)
    vg = sg.value_and_grad(loss, wrt=w, inputs=[w, X, y])
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=features) * 0.1
    out(
        f"logistic regression, {rows:.0e} rows x {features}, chunks of {chunk:.0e} rows; "
        f"median of {repeat} calls"
    )
    records = []
    Xn = yn = None
    for n_workers in workers:
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster),
        ):
            data = da.random.default_rng(1)
            Xd = data.normal(size=(rows, features), chunks=(chunk, features)).persist()
            yd = da.sign(data.normal(size=rows, chunks=chunk)).persist()
            if Xn is None:
                # copied into memory numpy allocates (which it asks the kernel to back with huge
                # pages); an array as it arrives from the cluster is not, and the same call on it
                # ran 1.7x slower here
                Xn, yn = np.array(Xd.compute()), np.array(yd.compute())
                ref = vg(w0, Xn, yn)
            got = vg(w0, Xd, yd)
            by_hand = _dask_array_value_and_grad(w0, Xd, yd, rows)
            error = max(
                abs(got[0] - ref[0]) / abs(ref[0]),
                float(np.max(np.abs(got[1] - ref[1])) / np.max(np.abs(ref[1]))),
            )
            error_by_hand = max(
                abs(by_hand[0] - ref[0]) / abs(ref[0]),
                float(np.max(np.abs(by_hand[1] - ref[1])) / np.max(np.abs(ref[1]))),
            )
            in_memory, t_sg, t_da = _median_seconds(
                [
                    lambda: vg(w0, Xn, yn),
                    lambda: vg(w0, Xd, yd),
                    lambda: _dask_array_value_and_grad(w0, Xd, yd, rows),
                ],
                repeat,
            )
            records.append(
                {
                    "workers": n_workers,
                    "symgrad_seconds": t_sg,
                    "dask_array_seconds": t_da,
                    "in_memory_seconds": in_memory,
                    "relative_error": error,
                    "dask_array_relative_error": error_by_hand,
                }
            )
    out(
        "| workers | symgrad on Dask | dask.array by hand | speed-up | in memory, 1 process "
        "| symgrad / in memory | max rel. error vs in memory |"
    )
    out("|---|---|---|---|---|---|---|")
    for r in records:
        out(
            f"| {r['workers']} | {r['symgrad_seconds'] * 1e3:.1f} ms | {r['dask_array_seconds'] * 1e3:.1f} ms "
            f"| {r['dask_array_seconds'] / r['symgrad_seconds']:.2f}x | {r['in_memory_seconds'] * 1e3:.1f} ms "
            f"| {r['symgrad_seconds'] / r['in_memory_seconds']:.2f} | {r['relative_error']:.1e} |"
        )
    return records

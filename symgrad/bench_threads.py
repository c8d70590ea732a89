"""``symgrad bench --suite threads``: a long fused loop's call on one thread against all of them.

The row blocks of a long fused loop run on the threads ``symgrad.config(threads=...)`` sets
(codegen/threads.py), with the same bits whatever their number. This suite measures both claims
on the workloads where the loops are long (``rosen/1e6``, ``logreg/1e6``, ``ew/1e7`` by
default): for each, value and gradient, then the forward alone, are called on 1 thread and on
every thread numba has, alternating round by round in one process, and the suite reports the
median wall-clock time of each count, the speedup, and whether every output has the same bits
on every count. The forward's rounds come after all of value and gradient's: a BLAS call in a
forward (``X @ w``) leaves OpenBLAS's own threads spinning for a while after it returns, and
they would take the second core from the next call's row blocks.

    symgrad bench --suite threads
    symgrad bench --suite threads logreg/1e6 --repeat 15
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import symgrad as sg
from symgrad.bench_output import report

DEFAULT_WORKLOADS = ("rosen/1e6", "logreg/1e6", "ew/1e7")
DEFAULT_REPEAT = 9
CALLS_PER_ROUND = 5


def _flat(result: Any) -> list[np.ndarray]:
    """Every array of a (nested tuple) result, as numpy arrays."""
    if isinstance(result, tuple | list):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


def _same_bits(a: Any, b: Any) -> bool:
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(fa, fb)
    )


def _call_seconds(fn, args) -> float:
    runs = []
    for _ in range(CALLS_PER_ROUND):
        start = time.perf_counter()
        fn(*args)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _alternate(fn, args, counts, repeat) -> dict[int, float]:
    """The median over ``repeat`` rounds of each thread count's call time, counts alternating."""
    times: dict[int, list[float]] = {c: [] for c in counts}
    for c in counts:  # each count's kernel compiled and warm before any timing
        sg.config(threads=c)
        fn(*args)
    for _ in range(repeat):
        for c in counts:
            sg.config(threads=c)
            times[c].append(_call_seconds(fn, args))
    return {c: statistics.median(t) for c, t in times.items()}


def measure_workload(
    workload: Any, name: str, counts: tuple[int, ...], repeat: int = DEFAULT_REPEAT
) -> dict[str, Any]:
    """One workload's record (a ``symgrad.bench.Workload``): per function (vg, forward), each
    count's median call seconds, the speedup of the largest count over 1, and whether the
    outputs' bits agree across counts."""
    w = workload
    record: dict[str, Any] = {"workload": name, "threads": list(counts)}
    functions = (
        ("vg", sg.value_and_grad(w.expr, wrt=w.wrt, inputs=w.inputs)),
        ("forward", sg.compile(w.expr, inputs=w.inputs)),
    )
    for label, fn in functions:
        outputs = {}
        for c in counts:
            sg.config(threads=c)
            outputs[c] = fn(*w.args)
        seconds = _alternate(fn, w.args, counts, repeat)
        record[label] = {
            "seconds": {str(c): s for c, s in seconds.items()},
            "speedup": seconds[counts[0]] / seconds[counts[-1]],
            "same_bits": all(_same_bits(outputs[counts[0]], outputs[c]) for c in counts[1:]),
        }
    return record


def table(records: list[dict[str, Any]]) -> list[str]:
    if not records:
        return []
    counts = records[0]["threads"]
    head = " | ".join(f"{c} thread{'s' if c > 1 else ''}" for c in counts)
    lines = [
        f"| workload | function | {head} | speedup | same bits |",
        "|---|---|" + "---|" * len(counts) + "---|---|",
    ]
    for r in records:
        for label in ("vg", "forward"):
            m = r[label]
            cells = " | ".join(f"{m['seconds'][str(c)] * 1e3:.2f} ms" for c in counts)
            same = "yes" if m["same_bits"] else "NO"
            lines.append(f"| {r['workload']} | {label} | {cells} | {m['speedup']:.2f}x | {same} |")
    return lines


def thread_counts() -> tuple[int, ...]:
    """1 and every thread numba has (numba's NUMBA_NUM_THREADS, the machine's cores by default)."""
    import numba  # heavy optional import: only this suite needs it here

    return (1, numba.config.NUMBA_NUM_THREADS)


def run(
    make_workload: Callable[[Any, str], Any],
    workloads: list[str] | tuple[str, ...] = (),
    *,
    repeat: int = DEFAULT_REPEAT,
    json_path: str | None = None,
    out=print,
) -> list[dict[str, Any]]:
    counts = thread_counts()
    if counts[-1] < 2:
        out(
            "symgrad bench --suite threads: numba has one thread here (NUMBA_NUM_THREADS=1); nothing to compare"
        )
        return []
    records = []
    # the calls timed are numba's machine code's; the settings before are back afterwards
    with sg.config(compile="sync"):
        for name in list(workloads) or list(DEFAULT_WORKLOADS):
            records.append(measure_workload(make_workload(sg, name), name, counts, repeat))
    return report("threads", records, table(records), repeat=repeat, json_path=json_path, out=out)

"""``symgrad bench --suite args``: the cost of each ordinary way of calling a compiled function.

A user passes what they have: Python floats, numpy scalars from indexing an array, 0-d arrays,
ints, keywords; arrays that are read-only, of integers, or not C-ordered. Each kind is timed
against the fastest kind of the same function in the same run (the positional Python-float
call for the seed ``x*y + sin(x)``, the C-contiguous float64 array for ``rosen`` on 1,000
points), so the ratios stay readable on a noisy machine. Two rows give the seed's floors measured
in the same run: what CPython costs a keyword call and numpy a 0-d array's reads, added to the
positional call, before any code of symgrad's runs. Each number is the median over
``--repeat`` rounds of the best of several timed loops, timed in the calling thread's CPU time
(``time.thread_time``): every call here runs in that thread, and time the thread spends waiting
for a core that other processes hold is not counted (on a shared 2-core machine wall-clock
ratios of sub-microsecond calls moved by 2x from run to run).

    symgrad bench --suite args
"""

import statistics
import time
import timeit

import numpy as np

import symgrad as sg
from symgrad.bench_output import report

DEFAULT_REPEAT = 7


def _seed():
    x, y = sg.scalars("x y")
    return sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y], inputs=[x, y])


def _rosen():
    x = sg.tensor("x", ("n",))
    loss = sg.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return sg.value_and_grad(loss, wrt=[x])


def cases():
    """(function, kind, call) rows; the first row of each function is its reference."""
    seed, rosen = _seed(), _rosen()
    a = np.linspace(-1.0, 1.0, 1000)
    read_only = a.copy()
    read_only.flags.writeable = False
    return [
        ("seed", "positional floats", seed, (0.7, -1.3), {}),
        ("seed", "np.float64 scalars", seed, (np.float64(0.7), np.float64(-1.3)), {}),
        ("seed", "0-d arrays", seed, (np.array(0.7), np.array(-1.3)), {}),
        ("seed", "np.float32 scalars", seed, (np.float32(0.7), np.float32(-1.3)), {}),
        ("seed", "ints", seed, (1, -2), {}),
        ("seed", "keywords", seed, (), {"x": 0.7, "y": -1.3}),
        ("seed", "positional and keyword", seed, (0.7,), {"y": -1.3}),
        ("rosen/1e3", "C float64 array", rosen, (a,), {}),
        ("rosen/1e3", "read-only array", rosen, (read_only,), {}),
        ("rosen/1e3", "keyword", rosen, (), {"x": a}),
        ("rosen/1e3", "int64 array", rosen, ((a * 10).astype(np.int64),), {}),
        ("rosen/1e3", "Fortran-strided view", rosen, (np.repeat(a, 2)[::2],), {}),
        ("rosen/1e3", "list", rosen, (a.tolist(),), {}),
    ]


def _seconds(fn, args, kwargs, repeat):
    fn(*args, **kwargs)  # compiled and warm
    timer = timeit.Timer(lambda: fn(*args, **kwargs), timer=time.thread_time)
    number, _ = timer.autorange()
    rounds = [min(timer.repeat(repeat=3, number=number)) / number for _ in range(repeat)]
    return statistics.median(rounds)


class _NoOp:
    """A callable instance doing nothing, called as a Compiled is (``__call__`` a function)."""

    @staticmethod
    def __call__(x, y):
        return None


def _statement_seconds(statement, names, repeat):
    """The median per-run time of ``statement`` (timeit's, with ``names`` as its globals)."""
    timer = timeit.Timer(statement, globals=names, timer=time.thread_time)
    number, _ = timer.autorange()
    return statistics.median(min(timer.repeat(repeat=3, number=number)) / number for _ in range(repeat))


def floors(positional, repeat=DEFAULT_REPEAT):
    """Rows for the seed's call with what Python and numpy cost before any code of symgrad's runs
    added to its positional call (``positional`` seconds): a keyword call of a callable instance
    (CPython builds a dict of the keywords for a type without vectorcall: ``_NoOp`` by keyword
    less by position) and a 0-d array's two reads (its dtype, the entry's test, and its value by
    float(), numba's read, less a Python float's)."""
    noop = _NoOp()
    by_keyword = _seconds(noop, (), {"x": 0.7, "y": -1.3}, repeat) - _seconds(noop, (0.7, -1.3), {}, repeat)
    names = {"a": np.array(0.7), "f": 0.7}
    read = _statement_seconds("float(a); a.dtype", names, repeat) - _statement_seconds(
        "float(f); f", names, repeat
    )
    return [
        ("keywords: CPython's floor (a no-op instance's keyword call)", positional + by_keyword),
        ("0-d arrays: numpy's floor (two dtype reads and float())", positional + 2 * read),
    ]


def measure(repeat=DEFAULT_REPEAT):
    records, reference = [], {}
    for function, kind, fn, args, kwargs in cases():
        seconds = _seconds(fn, args, kwargs, repeat)
        reference.setdefault(function, seconds)
        records.append(
            {"function": function, "kind": kind, "seconds": seconds, "ratio": seconds / reference[function]}
        )
    for kind, seconds in floors(reference["seed"], repeat):
        records.append(
            {"function": "seed", "kind": kind, "seconds": seconds, "ratio": seconds / reference["seed"]}
        )
    return records


def table(records):
    lines = ["| function | argument kind | call | ratio to the first row |", "|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['function']} | {r['kind']} | {r['seconds'] * 1e6:.2f} µs | {r['ratio']:.2f} |")
    return lines


def run(*, repeat=DEFAULT_REPEAT, json_path=None, out=print):
    # the calls timed are numba's machine code's; the settings before are back afterwards
    with sg.config(compile="sync"):
        records = measure(repeat)
    return report("args", records, table(records), repeat=repeat, json_path=json_path, out=out)

"""``symgrad bench``: build time and per-call time of value-and-grad, next to references.

Every workload has a hand-written numpy forward+backward as the reference
(symgrad must match it to 1e-6 relative), and where it is cheap to write, a
hand-fused numba loop (the limit a perfect code generator could reach). Times
are medians of repeated runs measured side by side in one process, so the
ratios are meaningful on a shared, noisy machine even when the absolute
times are not.
"""

import time

import numpy as np

from .cli import median_call_seconds, _fmt


def _seed_workload(sg):
    x, y = sg.scalars("x y")
    expr = x * y + sg.sin(x)

    def by_hand(x, y):
        return x * y + np.sin(x), (y + np.cos(x), x)

    build = lambda: sg.value_and_grad(expr, wrt=[x, y])
    return build, by_hand, None, (0.7, -1.3)


def _rosen_workload(sg, n):
    x = sg.tensor("x", ("n",))
    expr = sg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def by_hand(x):
        a = x[1:] - x[:-1] ** 2
        b = 1 - x[:-1]
        g = np.zeros_like(x)
        g[1:] += 200 * a
        g[:-1] += -400 * a * x[:-1] - 2 * b
        return np.sum(100 * a * a + b * b), g

    build = lambda: sg.value_and_grad(expr, wrt=x)
    arg = np.random.default_rng(0).uniform(-1, 1, n)
    return build, by_hand, _fused_rosen(), (arg,)


_FUSED = {}


def _fused_rosen():
    if "rosen" not in _FUSED:
        import numba

        @numba.njit(cache=True, nogil=True)
        def rosen_fused(x):
            n = x.shape[0]
            g = np.zeros(n)
            f = 0.0
            for i in range(n - 1):
                a = x[i + 1] - x[i] * x[i]
                b = 1.0 - x[i]
                f += 100.0 * a * a + b * b
                g[i + 1] += 200.0 * a
                g[i] += -400.0 * a * x[i] - 2.0 * b
            return f, g
        _FUSED["rosen"] = rosen_fused
    return _FUSED["rosen"]


def _agree(got, want):
    gv, gg = got
    wv, wg = want
    gg = gg if isinstance(gg, tuple) else (gg,)
    wg = wg if isinstance(wg, tuple) else (wg,)
    ok = np.allclose(gv, wv, rtol=1e-6, atol=1e-12)
    return ok and all(np.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(gg, wg))


def run(out=print, names=None):
    import symgrad as sg
    workloads = {
        "seed_scalar": lambda: _seed_workload(sg),
        "rosen/10": lambda: _rosen_workload(sg, 10),
        "rosen/1000": lambda: _rosen_workload(sg, 1000),
        "rosen/1e6": lambda: _rosen_workload(sg, 1_000_000),
    }
    header = f"{'workload':<14}{'build':>10}{'symgrad':>12}{'numpy':>12}{'fused':>12}{'sg/numpy':>10}{'sg/fused':>10}"
    out(header)
    out("-" * len(header))
    rows = []
    for name, make in workloads.items():
        if names and name not in names:
            continue
        build, by_hand, fused, args = make()
        start = time.perf_counter()
        vg = build()
        build_s = time.perf_counter() - start
        if not _agree(vg(*args), by_hand(*args)):
            raise AssertionError(f"{name}: symgrad disagrees with the numpy reference")
        t_sg = median_call_seconds(vg, *args)
        t_np = median_call_seconds(by_hand, *args)
        t_fused = median_call_seconds(fused, *args) if fused is not None else None
        fused_text = _fmt(t_fused) if t_fused else "       -   "
        ratio_fused = f"{t_sg / t_fused:10.2f}" if t_fused else f"{'-':>10}"
        out(f"{name:<14}{build_s:9.3f}s{_fmt(t_sg):>12}{_fmt(t_np):>12}{fused_text:>12}"
            f"{t_sg / t_np:10.2f}{ratio_fused}")
        rows.append((name, build_s, t_sg, t_np, t_fused))
    return rows

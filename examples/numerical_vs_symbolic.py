"""Central differences agree with symgrad's gradient, and show why they are only a check.

    f(w) = sum(log(1 + w**2)) + sum(w[1:] * w[:-1])      for w of n = 10 ... 10,000 entries

1. Error against step size h: (f(w + h e_i) - f(w - h e_i)) / 2h has a truncation
   error ~h^2 (large h) and a round-off error ~eps/h (small h); the best h is near
   eps^(1/3) ~ 1e-5 and even there only ~10 digits are right. symgrad's gradient is
   exact to rounding.
2. Cost against n: central differences need 2n evaluations of f, each O(n), so
   their cost grows like n^2 and is 2n times the cost of f; the symbolic gradient
   is one pass, a small constant times the cost of f whatever n is.

Prints two tables and, when matplotlib is installed, saves numerical_vs_symbolic.png
in $SYMGRAD_EXAMPLE_OUTDIR or the current directory.
"""

import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
SIZES = [10, 100, 1000] if QUICK else [10, 100, 1000, 10000]

w = sg.tensor("w", ("n",))
f_expr = sg.sum(sg.log1p(w**2)) + sg.sum(w[1:] * w[:-1])
f = sg.compile(f_expr, name="f")
vg = sg.value_and_grad(f_expr, wrt=w)


def gradient_by_hand(v):
    g = 2 * v / (1 + v**2)
    g[1:] += v[:-1]
    g[:-1] += v[1:]
    return g


def central_differences(v, h):
    g = np.empty_like(v)
    shifted = v.copy()
    for i in range(len(v)):
        shifted[i] = v[i] + h
        up = f(shifted)
        shifted[i] = v[i] - h
        down = f(shifted)
        shifted[i] = v[i]
        g[i] = (up - down) / (2 * h)
    return g


rng = np.random.default_rng(0)
v = rng.normal(size=10)
exact = gradient_by_hand(v)
symbolic_error = np.abs(vg(v)[1] - exact).max()
steps = [10.0**-k for k in range(1, 14)]
errors = [np.abs(central_differences(v, h) - exact).max() for h in steps]
print("1. error against step size (n = 10; max over the gradient's entries)")
print("     h        central differences   symgrad")
for h, err in zip(steps, errors):
    print(f"   {h:7.0e}   {err:12.2e}          {symbolic_error:8.1e}")
best = int(np.argmin(errors))
print(f"   best step {steps[best]:.0e}: error {errors[best]:.1e}; symgrad's error {symbolic_error:.1e}")
assert symbolic_error < 1e-14
assert 1e-7 <= steps[best] <= 1e-3  # neither the largest nor the smallest h wins
assert errors[0] > 100 * errors[best] and errors[-1] > 100 * errors[best]


def best_time(fn, *args, budget=0.2):
    """The fastest of a few runs (at least one, about ``budget`` seconds in all)."""
    times = []
    while not times or (sum(times) < budget and len(times) < 50):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


print()
print("2. cost of one gradient against n")
print("        n        f alone   central differences (/f)   symgrad value_and_grad (/f)")
costs = []
for n in SIZES:
    v = rng.normal(size=n)
    numerical = central_differences(v, 1e-5)
    np.testing.assert_allclose(vg(v)[1], gradient_by_hand(v), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(numerical, gradient_by_hand(v), rtol=1e-6, atol=1e-7)
    costs.append((best_time(central_differences, v, 1e-5), best_time(vg, v), best_time(f, v)))
    numerical_cost, symbolic_cost, f_cost = costs[-1]
    print(
        f"   {n:6d}   {f_cost * 1e6:9.1f} us   {numerical_cost * 1e3:12.3f} ms ({numerical_cost / f_cost:6.0f})   "
        f"{symbolic_cost * 1e6:14.1f} us ({symbolic_cost / f_cost:4.1f})"
    )
growth_numerical = costs[-1][0] / costs[0][0]
growth_symbolic = costs[-1][1] / costs[0][1]
print(
    f"   from n = {SIZES[0]} to {SIZES[-1]}: central differences x{growth_numerical:.0f}, "
    f"symgrad x{growth_symbolic:.1f} (f itself x{costs[-1][2] / costs[0][2]:.1f})"
)
assert growth_numerical > 10 * growth_symbolic
assert costs[-1][0] > 100 * costs[-1][1]
assert costs[-1][0] / costs[-1][2] > SIZES[-1] / 2  # about 2n evaluations of f
assert costs[-1][1] / costs[-1][2] < 20  # a constant number of passes

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no plot (pip install matplotlib)")
else:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.loglog(steps, errors, "o-", label="central differences")
    left.axhline(max(symbolic_error, 1e-17), color="C1", label="symgrad")
    left.set(xlabel="step h", ylabel="max error", title="error against step size")
    left.legend()
    right.loglog(SIZES, [c[0] for c in costs], "o-", label="central differences")
    right.loglog(SIZES, [c[1] for c in costs], "o-", label="symgrad")
    right.set(xlabel="n inputs", ylabel="seconds per gradient", title="cost against n")
    right.legend()
    fig.tight_layout()
    path = os.path.join(os.environ.get("SYMGRAD_EXAMPLE_OUTDIR", "."), "numerical_vs_symbolic.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print("saved", path)

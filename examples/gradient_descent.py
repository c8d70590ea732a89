"""Gradient descent on f = w1**2 + 0.5*w2**2 from (1, 1).

With step 1 the w2 coordinate lands on the minimum at once while w1 overshoots
back and forth forever: (1, 1) -> (-1, 0) -> (1, 0) -> (-1, 0) ... With step 0.1
both coordinates shrink geometrically (by 0.8 and 0.9 per step) to the minimum (0, 0).
"""

import numpy as np

import symgrad as sg

w1, w2 = sg.scalars("w1 w2")
f = w1**2 + 0.5 * w2**2
vg = sg.value_and_grad(f, wrt=[w1, w2])
print("f =", f, "   gradient =", sg.grad(f, [w1, w2]))


def descend(step, iterations, start=(1.0, 1.0)):
    w = np.array(start)
    path = [w]
    for _ in range(iterations):
        _, grads = vg(*w)
        w = w - step * np.array(grads)
        path.append(w)
    return path


path = descend(step=1.0, iterations=4)
print("step 1:  ", " -> ".join(f"({a:g}, {b:g})" for a, b in path))
np.testing.assert_array_equal(path[:3], [(1, 1), (-1, 0), (1, 0)])

path = descend(step=0.1, iterations=100)
print("step 0.1:", " -> ".join(f"({a:.3g}, {b:.3g})" for a, b in path[:4]), "-> ...")
for k in (10, 50, 100):
    value, _ = vg(*path[k])
    print(f"  after {k:3d} steps: w = ({path[k][0]:.2e}, {path[k][1]:.2e}), f = {value:.2e}")
np.testing.assert_allclose(path[100], [0.8**100, 0.9**100], rtol=1e-12)
assert np.abs(path[100]).max() < 1e-4

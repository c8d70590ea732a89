"""Gradient descent on w1**2 + 0.5*w2**2 from (1, 1): step 1 oscillates, a smaller step converges."""

import numpy as np

import symgrad as sg

w1, w2 = sg.scalars("w1 w2")
vg = sg.value_and_grad(w1 ** 2 + 0.5 * w2 ** 2, wrt=[w1, w2])

for step, iterations in [(1.0, 2), (0.1, 100)]:
    w = np.array([1.0, 1.0])
    path = [tuple(w)]
    for _ in range(iterations):
        _, grads = vg(*w)
        w = w - step * np.array(grads)
        path.append(tuple(w))
    shown = " -> ".join(f"({a:.3g}, {b:.3g})" for a, b in path[:3])
    print(f"step {step}: {shown}{' -> ...' if len(path) > 3 else ''} -> final ({w[0]:.2e}, {w[1]:.2e})")

"""A 2-2-1 sigmoid network learns XOR by gradient descent on compiled symgrad gradients.

XOR is not linearly separable: the two hidden units must carve the plane
first. The backward pass uses sigmoid' = s * (1 - s), reusing the forward value.
"""

import os

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
T = np.array([0, 1, 1, 0], dtype=float)

W1, b1 = sg.tensor("W1", (2, 2)), sg.tensor("b1", (2,))
W2, b2 = sg.tensor("W2", (2,)), sg.scalar("b2")
x, t = sg.tensor("x", ("n", 2)), sg.tensor("t", ("n",))
out = sg.sigmoid(sg.sigmoid(x @ W1 + b1) @ W2 + b2)
loss = sg.mean((out - t) ** 2)
params = [W1, b1, W2, b2]
vg = sg.value_and_grad(loss, wrt=params, inputs=params + [x, t])
predict = sg.compile(out, inputs=params + [x], name="predict")

rng = np.random.default_rng(1)
values = [rng.normal(size=(2, 2)), np.zeros(2), rng.normal(size=2), 0.0]
steps, learning_rate = (1000 if QUICK else 3000), 2.0
curve = []
for step in range(steps + 1):
    value, grads = vg(*values, X, T)
    values = [v - learning_rate * g for v, g in zip(values, grads)]
    curve.append(value)
    if step % (steps // 10) == 0:
        bar = "#" * max(0, int(round(10 * (np.log10(value) + 4))))  # log scale: 10 chars per decade
        print(f"step {step:5d}  loss {value:.5f}  {bar}")

pred = predict(*values, X)
print("inputs:", X.tolist())
print("outputs:", np.round(pred, 3), " targets:", T)
assert np.all((pred > 0.5) == (T > 0.5)), "XOR not learned"
assert curve[-1] < 0.01 and curve[-1] < curve[0] / 20

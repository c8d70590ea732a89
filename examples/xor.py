"""A 2-2-1 sigmoid network learns XOR by gradient descent on compiled symgrad gradients."""

import numpy as np

import symgrad as sg

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
T = np.array([0, 1, 1, 0], dtype=float)

W1, b1 = sg.tensor("W1", (2, 2)), sg.tensor("b1", (2,))
W2, b2 = sg.tensor("W2", (2,)), sg.scalar("b2")
x, t = sg.tensor("x", ("n", 2)), sg.tensor("t", ("n",))
out = sg.sigmoid(sg.sigmoid(x @ W1 + b1) @ W2 + b2)
loss = sg.mean((out - t) ** 2)
params = [W1, b1, W2, b2]
vg = sg.value_and_grad(loss, wrt=params, inputs=params + [x, t])
predict = sg.compile(out, inputs=params + [x])

rng = np.random.default_rng(1)
values = [rng.normal(size=(2, 2)), np.zeros(2), rng.normal(size=2), 0.0]
for step in range(5001):
    value, grads = vg(*values, X, T)
    values = [v - 2.0 * g for v, g in zip(values, grads)]
    if step % 1000 == 0:
        print(f"step {step:5d}  loss {value:.5f}")
pred = predict(*values, X)
print("outputs:", np.round(pred, 3), "targets:", T)
assert np.all((pred > 0.5) == (T > 0.5)), "XOR not learned"

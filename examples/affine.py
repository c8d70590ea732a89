"""f = W*x + b at W=-2, x=5, b=3: f = -7, df/dW = 5, df/dx = -2, df/db = 1."""

import symgrad as sg

W, x, b = sg.scalars("W x b")
vg = sg.value_and_grad(W * x + b, wrt=[W, x, b])
f, (dW, dx, db) = vg(-2.0, 5.0, 3.0)
print(f"f = {f}, df/dW = {dW}, df/dx = {dx}, df/db = {db}")
assert (f, dW, dx, db) == (-7.0, 5.0, -2.0, 1.0)

"""f = W*x + b at W=-2, x=5, b=3: f = -7, df/dW = 5, df/dx = -2, df/db = 1.

The smallest graph with a multiply and an add: the add node passes its upstream
gradient through unchanged, the multiply node swaps its inputs.
"""

import symgrad as sg

W, x, b = sg.scalars("W x b")
f = W * x + b
vg = sg.value_and_grad(f, wrt=[W, x, b])
value, (dW, dx, db) = vg(W=-2.0, x=5.0, b=3.0)

print("f =", f)
print("df/dW =", sg.grad(f, W), "   df/dx =", sg.grad(f, x), "   df/db =", sg.grad(f, b))
print(f"at W=-2, x=5, b=3:  f = {value}, df/dW = {dW}, df/dx = {dx}, df/db = {db}")
assert (value, dW, dx, db) == (-7.0, 5.0, -2.0, 1.0)
print()
print(vg.source.split("def call")[0].rstrip())

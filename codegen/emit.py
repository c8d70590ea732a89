"""Turn a finished graph into the text of a Python module.

The module holds one straight-line kernel (statements in dependency order,
forward part then backward part) and one plain-Python entry function that
validates and converts the arguments, binds the symbolic dimensions, checks
slicing requirements and calls the kernel. A backend subclasses ``Emitter``
and overrides the lowering of the ops it spells differently. In compiled kernels
a scalar ``where`` computes the statements only one of its branches reads inside
``if c: ... else: ...`` (``branch_owners``), so the branch not taken never runs.
"""

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from symgrad.errors import UnsupportedError
from symgrad.graph import dim_str, topo_order
from symgrad.ops.registry import OPS
from symgrad._version import __version__
from . import branches, ir, rolling
from .runtime import DIRECT_SCALARS, KERNEL_END, RANK_READ_BY_KERNEL
from .threads import MIN_ROWS
from .schedule import (
    Namer,
    comment_text,
    dim_identifier,
    dim_text,
    literal,
    product_text,
    schedule,
    shape_text,
)

# ops whose lowered value may share memory with an input or a constant: an output never returns one as it is
_VIEWS = {name for name, op in OPS.items() if op.aliases}

# the largest array (elements) a compiled kernel copies into an array the entry passes rather
# than return it: numba boxes a returned array through a Python call (numba_unpickle of its
# type), about 0.1-0.2 us more than the entry's np.empty and the argument (xor's four gradients:
# 3.70 -> 3.24 us, median of 40 interleaved runs), and far more on a busy machine; a copy of
# 256 doubles costs well under 0.1 us
COPIED_OUTPUT = 256


def _float_literal(v):
    v = float(v)
    if math.isnan(v):
        return "np.nan"
    if math.isinf(v):
        return "np.inf" if v > 0 else "(-np.inf)"
    text = repr(v)
    return f"({text})" if text.startswith("-") else text


def key_text(key):
    parts = []
    for k in key:
        if k[0] == "n":
            parts.append("None")
        elif k[0] == "i":
            parts.append(dim_text(k[1]) if not isinstance(k[1], int) else str(k[1]))
        else:
            start, stop, step = (
                "" if v is None else (str(v) if isinstance(v, int) else dim_text(v)) for v in k[1:]
            )
            parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
    return ", ".join(parts)


class Emitter:
    """Numpy-flavoured lowering shared by the backends."""

    backend = "numpy"
    runtime_module = "symgrad.codegen.numpy_runtime"
    module_imports = ()  # the generated module's imports of its backend's compiler (a subclass's)
    decorator = None
    # a backend running row blocks on threads (codegen/threads.py): the decorator of that version
    # of the kernel and the spelling of its parallel loop; None: the kernel runs on one thread
    blocks_decorator = None
    parallel_range = None
    # how an array a loop writes is allocated (ir.Alloc): its fill "empty" or "zeros"
    alloc_empty, alloc_zeros = "np.empty", "np.zeros"
    # printing for Compiled.save(): no branch for the argument kinds symgrad's hooks handle (they
    # need symgrad), and the entry-point comment of a module nothing binds after compiling
    standalone = False
    # the runtime has the op records' ``pair`` functions (sincos): print such pairs as one call
    pairs = False
    # the runtime has the ``serial`` ops' scalar twins ``s<op>``: print them in a rolled loop's body
    serial = False
    # the runs of repeated statements rolled into loops (``rolled_ir``): (the schedule, its
    # forward part's length, its ``schedule.Loop``s, the branch owners of ``branches.plan``)
    rolled = None

    def __init__(self, notes=None):
        self.namer = Namer()
        self.names = {}  # id(given node) -> its parameter name, literal or global constant
        self.bound = {}  # id(IR value) -> its name
        self.value = {}  # id(node) -> the IR value standing for it after the passes
        self.globals = []
        self.kernel_locals = []  # lines the kernel runs after its prelude (constants in the trip count)
        self.trip = None  # the rolled loops' trip count read from an input's shape (rolling.TripCount)
        self.bare = False  # kernel_into returns its one output not in a tuple (see module)
        # the rule notes of the derivative being compiled (autodiff.RuleNotes: .get(node) -> text
        # or None), shown as comments; nodes themselves carry none, so the source depends on this
        # compile's graph and notes alone
        self.notes = notes
        # printing a pass on lanes with a range flag (tiling's For.far): its name; False while
        # printing that pass again on libm; None elsewhere
        self._far = None

    def rule_comment(self, node):
        """``"  # <the rule that built node>"``, or "" when no rule note names it."""
        text = self.notes.get(node) if self.notes is not None else None
        return f"  # {comment_text(text)}" if text else ""

    # ------------------------------------------------------------ values

    def literal(self, node):
        """A scalar constant as code of the right dtype."""
        v = node.value.reshape(())[()]
        if node.dtype == "bool":
            return "True" if v else "False"
        if node.dtype == "float64":
            return _float_literal(v)
        if node.dtype == "float32":
            return f"np.float32({_float_literal(v)})"
        if node.dtype == "int64":
            return f"({int(v)})" if v < 0 else str(int(v))
        return f"np.{node.dtype}({int(v)})"

    def constant_array(self, node):
        name = self.namer.claim("const")
        arr = node.value
        dims = self.dims(node)
        if dims is not node.shape and arr.dtype.kind in "fi" and arr.size and np.all(arr == arr.flat[0]):
            # one value along the rolled loops' steps (an adjoint's ones): made in the kernel, in
            # the trip count, so that the kernel's module is the same text for every length
            v = arr.flat[0]
            fill = _float_literal(v) if arr.dtype.kind == "f" else str(int(v))
            self.kernel_locals.append(
                f"{name} = np.full({shape_text(dims)}, {fill}, dtype={self.np_dtype(arr.dtype.name)})"
            )
            return name
        if arr.size == 0:
            # a literal list would lose the shape of an empty array ([] for (0, 1))
            text = f"{name} = np.zeros({shape_text(arr.shape)}, dtype={self.np_dtype(arr.dtype.name)})"
        elif arr.size <= 24 and np.all(np.isfinite(arr)) if arr.dtype.kind == "f" else arr.size <= 24:
            body = repr(arr.tolist())
            text = f"{name} = np.array({body}, dtype={self.np_dtype(arr.dtype.name)})"
        else:
            text = (
                f"{name} = np.frombuffer(bytes.fromhex({arr.tobytes().hex()!r}), "
                f"dtype={self.np_dtype(arr.dtype.name)}).reshape({shape_text(arr.shape)})"
            )
        self.globals.append(text)
        return name

    def ref(self, node):
        """How the code refers to ``node``'s value (after the kernel's IR is printed)."""
        return self.code(self.value[id(node)])

    # ------------------------------------------------------------ lowering

    def lower(self, node, args):
        """Code computing ``node`` from argument expressions: an expression, or
        (lines, result) where ``lines`` assign to ``{out}``."""
        op = node.op
        method = getattr(self, "lower_" + op, None)
        if method is not None:
            return method(node, args)
        record = OPS[op]
        # the op table's lowering: this backend's own, else the shared one; a template takes the
        # operands by position and the attributes by name ("_rt.polygamma({n}, {0})")
        rule = record.lowerings.get(self.backend) or record.lower
        if callable(rule):
            return rule(node, args)
        if rule:
            return rule.format(*args, **node.attrs)
        raise UnsupportedError(f"the {self.backend} backend cannot lower op {op!r}")

    def np_dtype(self, dtype):
        return f"np.{dtype}" if dtype != "bool" else "np.bool_"

    def lower_cast(self, node, args):
        if node.ndim == 0:
            return f"{self.np_dtype(node.dtype)}({args[0]})"
        return f"{args[0]}.astype({self.np_dtype(node.dtype)})"

    def lower_where(self, node, args):
        c, a, b = node.inputs
        if node.ndim == 0:
            return f"{args[1]} if {args[0]} else {args[2]}"
        cond = args[0] if c.ndim else f"np.full({shape_text(self.dims(node))}, {args[0]})"
        return f"np.where({cond}, {args[1]}, {args[2]})"

    def lower_dimsize(self, node, args):
        return f"{self.np_dtype(node.dtype)}({product_text(node.attrs['dims'])})"

    def _reduce_np(self, fn, node, args):
        axes = node.attrs["axes"]
        keep = node.attrs["keepdims"]
        x = node.inputs[0]
        if len(axes) == x.ndim and not keep:
            return f"{fn}({args[0]})"
        return f"{fn}({args[0]}, axis={tuple(axes)}, keepdims={keep})"

    def lower_sum(self, node, args):
        return self._reduce_np("np.sum", node, args)

    def lower_max(self, node, args):
        return self._reduce_np("np.max", node, args)

    def lower_min(self, node, args):
        return self._reduce_np("np.min", node, args)

    def lower_prod(self, node, args):
        return self._reduce_np("np.prod", node, args)

    def lower_argmax_mask(self, node, args):
        return f"_rt.first_max_mask({args[0]}, {tuple(node.attrs['axes'])})"

    def lower_argmin_mask(self, node, args):
        return f"_rt.first_min_mask({args[0]}, {tuple(node.attrs['axes'])})"

    def lower_prod_others(self, node, args):
        return f"_rt.prod_others({args[0]}, {tuple(node.attrs['axes'])})"

    def lower_reshape(self, node, args):
        return f"np.reshape({args[0]}, {shape_text(self.dims(node))})"

    def lower_broadcast_to(self, node, args):
        return f"np.broadcast_to({args[0]}, {shape_text(self.dims(node))})"

    def lower_transpose(self, node, args):
        axes = node.attrs["axes"]
        if axes == tuple(reversed(range(len(axes)))):
            return f"{args[0]}.T"
        return f"np.transpose({args[0]}, {axes})"

    def lower_getitem(self, node, args):
        return f"{args[0]}[{self.key_code(node, node.inputs[0])}]"

    def dims(self, node):
        """``node``'s shape as the kernel prints it: the axes that run over the steps of the
        rolled loops' trip count (``rolling.time_axes``) as its symbol."""
        return node.shape if self.trip is None else self.trip.dims.get(id(node), node.shape)

    def key_code(self, node, whole):
        """The key of ``node`` (a ``getitem`` of ``whole``, or a ``slice_grad`` writing into it)
        as code: an int or a one-long slice along an axis of the trip count (``self.dims``) in the
        second half of its steps counted from its end."""
        key = node.attrs["key"]
        dims = self.dims(whole)
        if dims is whole.shape or not all(k[0] in "is" for k in key):  # a new axis: entries are not axes
            return key_text(key)
        trip, parts = self.trip, []
        for p, k in enumerate(key):
            if trip.timed(dims[p]) and k[0] == "i" and isinstance(k[1], int) and k[1] >= 0:
                parts.append(dim_text(trip.near_end(k[1], trip.size)).strip("()"))
            elif (
                trip.timed(dims[p])
                and k[0] == "s"
                and k[3] in (None, 1)
                and all(e is None or (isinstance(e, int) and e >= 0) for e in k[1:3])
            ):
                # a block of steps a:b (the adjoint of a stack reads g[t:t + 1])
                ends = [
                    "" if e is None else dim_text(trip.near_end(e, trip.size)).strip("()") for e in k[1:3]
                ]
                parts.append(":".join(ends))
            else:
                parts.append(key_text((k,)))
        return ", ".join(parts)

    def lower_slice_grad(self, node, args):
        lines = [
            f"{{out}} = np.zeros({shape_text(self.dims(node))}, dtype={self.np_dtype(node.dtype)})",
            f"{{out}}[{self.key_code(node, node)}] = {args[0]}",
        ]
        return lines

    def lower_concatenate(self, node, args):
        return f"np.concatenate(({', '.join(args)},), axis={node.attrs['axis']})"

    def _rows_of(self, arg, node, lead):
        """``arg`` (an array of ``node``'s shape) as a C-contiguous 2-D (lead dims, rest) array."""
        k = len(lead)
        return (
            f"np.ascontiguousarray({arg}).reshape(({product_text(node.shape[:k])}, "
            f"{product_text(node.shape[k:])}))"
        )

    def _index_vector(self, arg, idx):
        if idx.ndim == 0:
            return f"np.array([{arg}])"
        return f"np.ascontiguousarray({arg}).reshape(({product_text(idx.shape)},))"

    def lower_take0(self, node, args):
        x, idx = node.inputs
        rows = self._rows_of(args[0], x, x.shape[:1])
        return f"_rt.take_rows({rows}, {self._index_vector(args[1], idx)}).reshape({shape_text(node.shape)})"

    def lower_scatter_add0(self, node, args):
        g, idx = node.inputs
        rows = self._rows_of(args[0], g, idx.shape)
        return (
            f"_rt.scatter_add_rows({rows}, {self._index_vector(args[1], idx)}, "
            f"{dim_text(node.attrs['size'])}).reshape({shape_text(node.shape)})"
        )

    def lower_take_last(self, node, args):
        return f"_rt.take_last(np.ascontiguousarray({args[0]}), np.ascontiguousarray({args[1]}))"

    def lower_scatter_last(self, node, args):
        return (
            f"_rt.scatter_last(np.ascontiguousarray({args[0]}), np.ascontiguousarray({args[1]}), "
            f"{dim_text(node.attrs['size'])})"
        )

    def lower_arange(self, node, args):
        return f"np.arange({dim_text(node.attrs['n'])})"

    def lower_stop_gradient(self, node, args):
        return args[0]

    # ------------------------------------------------------------ module

    def copy_output(self, node, ref):
        if node.ndim == 0:
            return ref
        return f"{ref}.copy()"  # C order, one copy (ascontiguousarray first copied a transpose twice)

    def kernel_header(self, name, params):
        lines = []
        if self.decorator:
            lines.append(self.decorator)
        lines.append(f"def {name}({', '.join(params)}):")
        return lines

    def module(self, outputs, output_names, inputs, primary, entry, title, structure):
        """The module text. ``structure`` is the code of the entry's return value,
        written over ``out[i]`` (e.g. ``out[0], (out[1], out[2])``)."""
        self.title = title
        self.namer.reserve(entry)
        params = []
        for s in inputs:
            name = self.namer.claim(s.name)
            self.names[id(s)] = name
            params.append(name)
        self.inputs = list(inputs)
        forward, backward = schedule(outputs, primary)
        self.order = forward + backward  # topo_order(outputs)
        # every node the kernel computes, loop bodies included: walked once for the entry's checks
        self.computed = with_loop_bodies(outputs, self.order)
        dims = {}
        prelude = []
        for s, p in zip(inputs, params):
            for axis, d in enumerate(s.shape):
                if not isinstance(d, int) and d.is_Symbol and d.name not in dims:
                    dims[d.name] = (p, axis)
                    prelude.append(f"{dim_identifier(d.name)} = {p}.shape[{axis}]")
        check_loop_lengths(self.computed, dims, title)
        out_name_of = {}
        for node, oname in zip(outputs, output_names):
            if node.op not in _VIEWS and id(node) not in out_name_of:
                out_name_of[id(node)] = self.namer.claim(oname)
        kernel = self.kernel_ir(forward, backward, out_name_of, outputs)
        if self.trip is not None:
            prelude.append(f"{dim_identifier(self.trip.name)} = {self.trip.param}.shape[{self.trip.axis}]")
        # a compiled kernel (not a saved module's) writes an output array its loops allocate into
        # one the entry allocates and passes (kernel_into): numba boxes every array a kernel
        # returns through a Python call (numba_unpickle of its type: see COPIED_OUTPUT)
        self.passed = (
            [] if self.interpreted or self.standalone else passed_outputs(kernel, outputs, self.value)
        )
        self.kernel_ir_full = kernel
        # what becomes of each output, decided on the IR before anything is printed
        plans = self.plan_outputs(kernel, outputs, output_names, out_name_of)
        kernel = without_allocs(kernel, self.passed)
        body = self.print_block(kernel)
        printed = len(body)
        returned = []
        for plan in plans:
            ref = self.ref(plan.node)
            if plan.copied:
                name = self.namer.claim(plan.name)
                body.append(f"{name} = {self.copy_output(plan.node, ref)}")
                ref = name
            if plan.put:
                # (through the runtime's put, compiled once: numba's own array assignment compiles
                # its shape-mismatch message into the kernel, seconds of build)
                body.append(f"_rt.put({self.name_of(plan.passed.target)}, {ref})")
            elif plan.passed is None:
                returned.append(ref)
        # kernel_into returns its one other output as it is: numba boxes no tuple around it (a
        # value and gradient's value: 40 ns of a 0.15-0.2 us machine-code call). What numba code
        # calls (kernel) and a kernel of no passed array keep their tuple
        self.bare = bool(self.passed) and len(returned) == 1
        if self.bare:
            body.append(f"return {returned[0]}")
        else:
            body.append(f"return ({', '.join(returned)},)" if returned else "return ()")
        self.out_params = [self.name_of(alloc.target) for _, alloc in self.passed]
        machine = "kernel_into" if self.passed else "kernel"
        # the version whose long fused loops run in row blocks on the threads (same names, same tail)
        self.row_extents = []
        blocked_body = None
        blocked = (
            None
            if self.blocks_decorator is None or self.standalone
            else self.row_blocks(self.kernel_ir_full, outputs)
        )
        if blocked is not None:
            blocked_ir, self.row_extents = blocked
            blocked_body = self.print_block(without_allocs(blocked_ir, self.passed)) + body[printed:]

        lines = [
            f"# generated by symgrad {__version__}, backend: {self.backend}",
            f"# {comment_text(title)}",
            "import numpy as np",
        ]
        lines += self.module_imports
        lines += [f"import {self.runtime_module} as _rt", "import symgrad.codegen.runtime as _cv", ""]
        lines += self.globals
        if self.globals:
            lines.append("")
        lines.append("")
        machine_params = params + self.out_params
        if self.passed:
            lines += self.kernel_with_outputs(params, prelude, outputs)
            lines += [
                "# kernel() writing the arrays its loops fill into the arrays given after the inputs (the",
                "# entry allocates them); it returns the other outputs",
            ]
        lines += self.kernel_header(machine, machine_params)
        lines += ["    " + l for l in prelude + self.kernel_locals + body]
        lines += ["", ""]
        if not self.interpreted:
            lines += [
                KERNEL_END.rstrip("\n"),  # where the kernel's own module ends (runtime.load_module)
                "# (here: the dispatcher; it compiles on the first call and caches the machine code)"
                if self.standalone
                else "# (codegen binds it after compiling; until then, the dispatcher)",
                f"kernel_entry = {machine}",
                "",
                "",
            ]
        if blocked_body is not None:
            lines += [
                "# kernel() with its fused loops cut into row blocks run on the threads: call() runs it",
                "# when a loop has many rows (it compiles on that first call); the same bits whatever the",
                "# number of threads",
                self.blocks_decorator,
                f"def kernel_blocks({', '.join(machine_params)}):",
            ]
            lines += ["    " + l for l in prelude + self.kernel_locals + blocked_body]
            lines += ["", ""]
        lines += self.checked_kernel(inputs, params, outputs)
        entry_lines = self.entry_function(inputs, params, dims, outputs, structure, entry)
        # the entry alone, at its line in the module: codegen/tiers.py runs it before the module loads
        self.entry_source = "\n" * len(lines) + "\n".join(entry_lines) + "\n"
        lines += entry_lines
        return "\n".join(lines) + "\n"

    def plan_outputs(self, kernel, outputs, output_names, out_name_of):
        """What the kernel does with each output (an ``OutputPlan`` each, in order), decided on its
        IR ``kernel`` before it is printed. Every array it hands on is a fresh buffer: never an
        input, a constant, a view of them, or another output (``compile([e, e])`` and two equal
        gradients return two arrays), so such an output is copied. A fused loop's array is
        passed (``self.passed``); a small array otherwise made is copied into one the entry passes
        (``copies_into_passed``, appended to ``self.passed``), or written there by the
        instruction computing it (``write_into``)."""
        plans, handed = [], set()  # ids of the nodes handed on as their own value
        filled = dict(self.passed)
        for k, (node, oname) in enumerate(zip(outputs, output_names)):
            value = self.value[id(node)]
            copied = (
                node.op in _VIEWS
                or fixed_name(value) != out_name_of.get(id(node))
                or (node.ndim > 0 and id(node) in handed)
            )
            plan = OutputPlan(node, oname, value, copied, filled.get(k))
            if not copied:
                handed.add(id(node))
            if plan.passed is None and self.copies_into_passed(node):
                # a small array an instruction makes (a small product): copied into a passed one
                plan.passed, plan.put = ir.Alloc(ir.Var(oname, node.dtype, node.shape)), True
                self.passed.append((k, plan.passed))
            plans.append(plan)
        write_into(kernel, plans, self.writes_into)
        return plans

    def writes_into(self, instr):
        """Can ``instr`` (at the kernel's top level) write its array into a given one
        (``Instr.into``, printed by ``lower_into``)? This backend's instructions cannot."""
        return False

    def lower_into(self, node, args, target):
        """Code computing ``node`` from argument expressions into the array ``target``, which it
        returns (an instruction ``writes_into`` accepts)."""
        raise TypeError(f"the {self.backend} backend writes no {node.op} into a given array")

    def copies_into_passed(self, node):
        """Does ``kernel_into`` copy the output ``node`` into an array the entry passes, rather
        than return it? For an array of at most ``COPIED_OUTPUT`` elements (fixed shape): copying
        it costs less than numba's boxing of a returned array. Not in a kernel whose loops count in
        an input's length (``self.trip``): its text is the same for every length, whatever the
        outputs' sizes at the traced one."""
        if self.interpreted or self.standalone or node.ndim == 0 or self.trip is not None:
            return False
        return all(isinstance(d, int) for d in node.shape) and math.prod(node.shape) <= COPIED_OUTPUT

    def output_allocs(self, entry=False, read=None):
        """The lines allocating the arrays passed to ``kernel_into`` (a loop's ``Alloc``, moved):
        in ``kernel``, or with numpy's functions in the ``entry`` (numpy gives a large array
        huge pages itself), whose runtime names are added to ``read`` (see ``entry_globals``)."""
        lines = []
        for (_, alloc), name in zip(self.passed, self.out_params):
            t = alloc.target
            fn = self.alloc_zeros if alloc.fill == "zeros" else self.alloc_empty
            note = self.note_text(alloc.note)
            if entry:
                # the entry is the traced length's (it has no trip count)
                shape = [
                    self.trip.size if self.trip is not None and self.trip.timed(d) else d for d in t.shape
                ]
                lines.append(f"{name} = {entry_alloc(alloc.fill, shape, t.dtype, read)}{note}")
                continue
            lines.append(f"{name} = {fn}({shape_text(t.shape)}, dtype={self.np_dtype(t.dtype)})")
        return lines

    def kernel_with_outputs(self, params, prelude, outputs):
        """``kernel``, for numba code and ``.kernel``, when the machine code is ``kernel_into``: it
        allocates the arrays ``kernel_into`` fills and returns every output, as ``call()`` does."""
        lines = self.kernel_header("kernel", params)
        lines.append(
            '    """The outputs from the inputs: kernel_into() with the arrays it fills allocated."""'
        )
        lines += ["    " + l for l in prelude + self.output_allocs()]
        lines.append(f"    out = kernel_into({', '.join(params + self.out_params)})")
        lines.append(f"    return ({', '.join(self.outputs_after_call(len(outputs)))},)")
        return lines + ["", ""]

    def outputs_after_call(self, count):
        """Every output's code after ``out = kernel_into(...)``: a passed array by its name, the
        others ``out[j]`` in the order the kernel returns them (``out`` itself when it returns one
        as it is: ``self.bare``)."""
        passed = {k: name for (k, _), name in zip(self.passed, self.out_params)}
        items, j = [], 0
        for k in range(count):
            if k in passed:
                items.append(passed[k])
            else:
                items.append("out" if self.bare else f"out[{j}]")
                j += 1
        return items

    def checked_kernel(self, inputs, params, outputs):
        """``kernel_checked``: the kernel after the size checks the entry makes (every fixed dim,
        every named dim equal wherever it occurs, every slice's minimum), raising ValueError with
        a constant message naming the argument and axis, so numba code can call it. Types,
        ranks and layouts are numba's to check (it compiles the caller for the types given);
        index values the kernel checks itself (IndexError)."""
        head = f"{self.title}: kernel_checked: "
        checks, bound = [], {}
        for s, p in zip(inputs, params):
            for axis, d in enumerate(s.shape):
                if not isinstance(d, int) and d.is_Symbol and d.name not in bound:
                    bound[d.name] = (s.name, axis)
                    checks.append(f"{dim_text(d)} = {p}.shape[{axis}]")
        for s, p in zip(inputs, params):
            for axis, d in enumerate(s.shape):
                if isinstance(d, int):
                    why = f"must have length {d}"
                elif d.is_Symbol and bound[d.name] == (s.name, axis):
                    continue
                elif d.is_Symbol:
                    first, first_axis = bound[d.name]
                    why = f"must have the length of axis {first_axis} of {first!r} (dim {d.name})"
                else:
                    why = f"must have length {dim_str(d)}"
                checks.append(f"if {p}.shape[{axis}] != {dim_text(d)}:")
                checks.append(f"    raise ValueError({head + f'argument {s.name!r}, axis {axis}: ' + why!r})")
        for dim, minimum, what in requirements(self.computed):
            where = ", ".join(
                f"{sym.name} is axis {bound[sym.name][1]} of {bound[sym.name][0]!r}"
                for sym in sorted(dim.free_symbols, key=str)
                if sym.name in bound
            )
            why = f"{dim_str(dim)} must be at least {minimum} for {what} ({where})"
            checks.append(f"if {dim_text(dim)} < {minimum}:")
            checks.append(f"    raise ValueError({head + why!r})")
        lines = self.kernel_header("kernel_checked", params)
        lines.append(
            '    """kernel() after the size checks call() makes (a ValueError naming the argument '
            'and axis)."""'
        )
        lines += ["    " + line for line in checks]
        lines += [f"    return kernel({', '.join(params)})", "", ""]
        return lines

    def kernel_ir(self, forward, backward, out_name_of, outputs):
        """The kernel as IR after this backend's passes: straight-line statements, and in compiled
        kernels the scalar statements only one branch of a scalar ``where`` reads moved into that
        branch (``branches.sink``)."""
        nodes = list(forward) + list(backward)
        block, self.value = ir.build(nodes)
        self.name_outputs(out_name_of)
        if not self.interpreted:
            # around and inside a loop's For (sg.scan) too
            block = branches.sink_in_loops(branches.sink(block, outputs))
        backward_ids = {id(n) for n in backward}
        parts = [part_of(stmt, backward_ids) for stmt in block]
        # a loop's carries and stacks are set up just before its For: they belong to its part
        for k in range(len(block) - 1, 0, -1):
            if parts[k] is not None and isinstance(block[k - 1], (ir.Assign, ir.Alloc)):
                if isinstance(block[k], (ir.For, ir.Assign, ir.Alloc)) and parts[k - 1] is None:
                    parts[k - 1] = parts[k]
        return ir.sectioned([(part, [stmt]) for part, stmt in zip(parts, block)], bool(backward))

    def rolled_ir(self, out_name_of, outputs):
        """The kernel's IR with the runs of ``self.rolled`` rolled into loops (``rolling.roll``),
        the scalar statements one branch of a scalar ``where`` reads moved into it and stacks of
        per-step scalars stored into their arrays; loops tied to ``self.trip`` (None: every loop
        counts in numbers) count in that input's length."""
        nodes, n_forward, loops, owner = self.rolled
        block, self.value = ir.build(nodes)
        self.name_outputs(out_name_of)
        block = branches.sink(block, outputs, owner)
        statement_of = {id(s.instr.node if isinstance(s, ir.If) else s.node): s for s in block}
        units = rolling.roll(nodes, n_forward, loops, self.value, statement_of, self.trip)
        if self.trip is not None:
            rolling.print_dims([s for _, stmts in units for s in stmts], self.trip)
        units = rolling.stack_scalars(units, out_name_of, self.value, self.trip)
        return ir.sectioned(units, len(nodes) > n_forward)

    def row_blocks(self, kernel, outputs):
        """(the IR of the kernel running its long loops in row blocks on threads, their row
        counts), or None: this backend's kernel runs on one thread."""
        return None

    def name_outputs(self, out_name_of):
        for value in self.value.values():
            if isinstance(value, ir.Instr) and id(value.node) in out_name_of:
                value.name = out_name_of[id(value.node)]

    # ------------------------------------------------------------ printing the IR

    def name_of(self, v):
        """The name of a value a statement binds, claimed when first needed."""
        name = self.bound.get(id(v))
        if name is not None:
            return name
        if isinstance(v, ir.If):
            name = self.name_of(v.instr)
        elif isinstance(v, ir.Instr):
            if v.name:
                name = v.name
            elif v.scalar or v.naming is not None:
                names = [self.short(o) for o in (v.naming if v.naming is not None else v.operands)]
                if self.trip is not None and _commutes(v):
                    names.sort()  # (see print_statement)
                name = self.namer.derive(v.node, names)
            elif len(v.operands) > 2:
                # named by its op alone (Namer.derive): the operands (a stack's T rows) claim no names here
                name = self.namer.claim(v.node.op)
            else:
                names = [self.code(o) for o in v.operands]
                if self.trip is not None and _commutes(v):
                    names.sort()  # (see print_statement)
                name = self.namer.derive(v.node, names)
        elif isinstance(v, ir.Var) and v.name:
            name = v.name
        elif isinstance(v, ir.Var) and v.derive is not None:
            node, values = v.derive
            name = self.namer.derive(node, [self.short(o) for o in values])
        elif isinstance(v, (ir.Var, ir.LoopVar)):
            name = self.namer.claim(self.short(v.like) + v.suffix if v.like is not None else v.hint)
        else:
            raise TypeError(f"{type(v).__name__} is not bound by a statement")
        self.bound[id(v)] = name
        return name

    def short(self, v):
        """A value's name for naming others (a stored array's without its ``_arr``)."""
        if isinstance(v, ir.Elem):
            v = v.array
        if isinstance(v, ir.Given):
            return self.code(v)
        if not isinstance(v, (ir.Instr, ir.If, ir.Var, ir.LoopVar)):
            return ""
        name = self.name_of(v)
        return name[:-4] if name.endswith("_arr") else name

    def code(self, v):
        """The expression text of value ``v``."""
        if isinstance(v, ir.Given):
            node = v.node
            if id(node) not in self.names:
                if node.op == "symbol":
                    raise KeyError(node)
                self.names[id(node)] = self.literal(node) if node.ndim == 0 else self.constant_array(node)
            return self.names[id(node)]
        if isinstance(v, (ir.Instr, ir.If, ir.Var, ir.LoopVar)):
            return self.name_of(v)
        if isinstance(v, ir.Elem):
            return f"{self.code(v.array)}[{', '.join(self.position_code(i) for i in v.index)}]"
        if isinstance(v, ir.Guard):
            conds = []
            for index, start, length in v.conds:
                i = self.index_code(index)
                s = self.window_code(start)
                conds.append(
                    f"{i} < {dim_text(length)}" if s == "0" else f"{s} <= {i} < {s} + {dim_text(length)}"
                )
            return f"({self.code(v.value)} if {' and '.join(conds)} else {self.zero(v.dtype)})"
        if isinstance(v, ir.Convert):
            return f"np.{v.dtype}({self.code(v.value)})"
        if isinstance(v, ir.AsType):
            return f"{self.code(v.value)}.astype({self.np_dtype(v.dtype)})"
        if isinstance(v, ir.Full):
            return f"np.full({shape_text(v.shape)}, {self.code(v.value)})"
        if isinstance(v, ir.Zero):
            return self.zero(v.dtype)
        if isinstance(v, ir.Formula):
            return v.template.format(*[self.index_code(o) for o in v.operands])
        if isinstance(v, ir.Apply):
            record = OPS[v.op]
            return (record.scalar or record.lower).format(*[self.code(o) for o in v.operands])
        raise TypeError(f"cannot print a {type(v).__name__}")

    def term_code(self, v):
        """``v`` as a term of a sum printed left to right: a name, or an op binding tighter than
        ``+`` (by the op table's precedence), as it is; anything else in parentheses."""
        text = self.code(v)
        # an infix op binding tighter than the sum's + (a product, a quotient, a power) as it is
        if isinstance(v, ir.Apply) and OPS[v.op].precedence <= OPS["add"].precedence:
            return f"({text})"
        return text

    def zero(self, dtype):
        return "np.float32(0.0)" if dtype == "float32" else "0.0"

    def window_code(self, start):
        if isinstance(start, ir.WindowStart):
            start = start.value
        if isinstance(start, int):
            return str(start)
        if isinstance(start, tuple) and start[0] == "end":
            return f"max({dim_text(start[1])} - {start[2]}, 0)"
        return dim_text(start)

    def index_code(self, i):
        if isinstance(i, ir.Span):
            start = self.index_code(i.start)
            return f"{start}:{start} + 1"
        if isinstance(i, ir.Shift):
            s = self.code(i.start) if isinstance(i.start, ir.Value) else self.window_code(i.start)
            return f"{self.index_code(i.index)} {'+' if i.sign > 0 else '-'} {s}"
        if isinstance(i, ir.Row):
            return self.index_code(i.index) if i.k == 0 else f"{self.index_code(i.index)} + {i.k}"
        if isinstance(i, ir.Affine):
            step = self.index_code(i.index)
            t0 = self.position_code(i.t0)
            if i.direction == 1:
                return step if i.t0 == 0 else f"{t0} + {step}"
            if i.direction == -1:
                return f"{t0} - {step}"
            return f"{t0} + {i.direction} * {step}"
        if isinstance(i, ir.Value):
            return self.code(i)
        return dim_text(i)

    def position_code(self, i):
        """An index, or a loop's bound, standing alone (an item of ``a[...]``, ``range(...)``, the
        left of ``+``/``-``): a sum of a dim and an int without parentheses."""
        text = self.index_code(i)
        if not isinstance(i, (int, ir.Value)) and getattr(i, "is_Add", False):
            return text[1:-1] if text.startswith("(") and text.endswith(")") else text
        return text

    def note_text(self, note):
        """The comment of a statement's ``note`` (see ``ir``): a str, or a node's rule comment."""
        if note is None or note is False:
            return ""
        if isinstance(note, str):
            return f"  # {note}"
        return self.rule_comment(note)

    def instr_comment(self, instr):
        if instr.note is False:
            return ""
        if isinstance(instr.note, str):
            return f"  # {instr.note}"
        return self.rule_comment(instr.node)

    def scalar_code(self, instr, args):
        """One element of ``instr``'s op, in a fused loop (the op table's scalar spelling)."""
        node = instr.node
        if node.op == "cast":
            return f"np.{node.dtype}({args[0]})"
        record = OPS[node.op]
        if instr.lanes and record.on_lanes(node) and self._far is not False:
            # on SIMD lanes: the runtime's arithmetic version (LLVM vectorises it; libm's it cannot)
            code = f"_rt.v{node.op}({', '.join(args)})"
        else:
            own = record.lowerings.get(self.backend)
            code = (record.scalar or (own if isinstance(own, str) else "") or record.lower).format(
                *args, **node.attrs
            )
        if node.dtype == "float32" and any(
            i.dtype != "float32" for i in node.inputs if not (node.op == "where" and i is node.inputs[0])
        ):
            code = f"np.float32({code})"
        return code

    def print_block(self, block):
        lines = []
        pairs = find_pairs(block) if self.pairs and self._far is not False else {}
        skip = {id(b) for b in pairs.values()}
        for stmt in block:
            if id(stmt) in skip:
                continue
            other = pairs.get(id(stmt))
            lines.extend(self.print_statement(stmt) if other is None else self.print_pair(stmt, other))
        return lines

    def print_pair(self, first, second):
        """``a, b = _rt.<pair function>(x)``: two scalar instructions of one operand (``find_pairs``)."""
        arg = self.code(first.operands[0])
        function = OPS[first.node.op].pair[1]
        on_lanes = first.lanes and OPS[first.node.op].on_lanes(first.node)
        call = f"_rt.{'v' if on_lanes else ''}{function}({arg})"
        comments = [c[4:] for c in (self.instr_comment(first), self.instr_comment(second)) if c]
        comment = f"  # {'; '.join(comments)}" if comments else ""
        lines = [f"{self.name_of(first)}, {self.name_of(second)} = {call}{comment}"]
        if on_lanes and self._far and OPS[first.node.op].lanes_range:
            lines.append(f"{self._far} |= _rt.v{first.node.op}_far({arg})")
        return lines

    def print_statement(self, stmt):
        if isinstance(stmt, ir.Instr):
            args = [self.code(o) for o in stmt.operands]
            if self.trip is not None and _commutes(stmt) and args[1] < args[0]:
                # in a kernel of the trip count, a sum or product of two operands in the order of
                # their text: the graph orders them by digests of its nodes, which differ with the
                # traced length (the text would too); a + b and b + a are one float
                args.reverse()
                stmt.operands.reverse()
                if stmt.naming is not None and len(stmt.naming) == 2:
                    stmt.naming = stmt.naming[::-1]
            if (
                self.serial
                and stmt.serial
                and OPS[stmt.node.op].serial
                and stmt.dtype == "float64"
                and stmt.shape == ()
            ):
                # a rolled loop's body: the runtime's scalar arithmetic twin (a called function)
                code = f"_rt.s{stmt.node.op}({', '.join(args)})"
            elif stmt.into is not None:
                code = self.lower_into(stmt.node, args, self.name_of(stmt.into))
            else:
                code = self.scalar_code(stmt, args) if stmt.scalar else self.lower(stmt.node, args)
            name = self.name_of(stmt)
            comment = self.instr_comment(stmt)
            if isinstance(code, str):
                if self._far and stmt.lanes and OPS[stmt.node.op].lanes_range:
                    # the twin holds over a range only: note an operand beyond it
                    return [f"{name} = {code}{comment}", f"{self._far} |= _rt.v{stmt.node.op}_far({args[0]})"]
                return [f"{name} = {code}{comment}"]
            lines = [line.format(out=name) for line in code]
            lines[0] += comment
            return lines
        if isinstance(stmt, ir.If):
            name = self.name_of(stmt)
            lines = [f"if {self.code(stmt.cond)}:{self.instr_comment(stmt.instr)}"]
            for k, (block, value) in enumerate(zip(stmt.blocks, stmt.values)):
                if k:
                    lines.append("else:")
                inner = self.print_block(block) + [f"{name} = {self.code(value)}"]
                lines += ["    " + line for line in inner]
            return lines
        if isinstance(stmt, ir.For):
            var = self.name_of(stmt.var)
            if stmt.start is None:
                bounds = self.position_code(stmt.stop)
            else:
                bounds = f"{self.index_code(stmt.start)}, {self.index_code(stmt.stop)}"
                if stmt.step is not None:
                    bounds += f", {stmt.step}"
            note = f"  # {stmt.note}" if stmt.note else ""
            loop = self.parallel_range if stmt.parallel else "range"
            head = f"for {var} in {loop}({bounds}):{note}"
            if stmt.far is None:
                return [head] + ["    " + line for line in self.print_block(stmt.body)]
            far = self.name_of(stmt.far)
            outer, self._far = self._far, far
            lines = [f"{far} = False", head] + ["    " + line for line in self.print_block(stmt.body)]
            self._far = False  # the same statements again, on libm
            again = self.print_block(stmt.body)
            self._far = outer
            lines += [f"if {far}:  # an operand beyond the range of the arithmetic versions: again on libm"]
            return lines + [f"    for {var} in range({bounds}):"] + ["        " + line for line in again]
        if isinstance(stmt, ir.Assign):
            note = self.note_text(stmt.note)
            return [f"{self.name_of(stmt.target)} = {self.code(stmt.value)}{note}"]
        if isinstance(stmt, ir.Alloc):
            t = stmt.target
            note = self.note_text(stmt.note)
            if not t.shape:
                return [f"{self.name_of(t)} = 0.0{note}"]
            fn = self.alloc_zeros if stmt.fill == "zeros" else self.alloc_empty
            return [f"{self.name_of(t)} = {fn}({shape_text(t.shape)}, dtype={self.np_dtype(t.dtype)}){note}"]
        if isinstance(stmt, ir.Store):
            index = ", ".join(self.index_code(i) for i in stmt.index)
            comment = self.note_text(stmt.note)
            if stmt.more:  # added left to right, as one += each
                element = f"{self.code(stmt.array)}[{index}]"
                terms = " + ".join(self.term_code(v) for v in (stmt.value, *stmt.more))
                return [f"{element} = {element} + {terms}{comment}"]
            return [
                f"{self.code(stmt.array)}[{index}] {'+=' if stmt.add else '='} {self.code(stmt.value)}{comment}"
            ]
        if isinstance(stmt, ir.Accum):
            comment = self.note_text(stmt.note)
            return [f"{self.code(stmt.target)} += {self.code(stmt.value)}{comment}"]
        if isinstance(stmt, ir.Bound):
            stop = self.index_code(stmt.stop)
            size = stmt.size if isinstance(stmt.size, int) else self.code(stmt.size)
            return [f"{self.name_of(stmt.target)} = min({self.name_of(stmt.start)} + {size}, {stop})"]
        if isinstance(stmt, ir.TileCall):
            # the op's compiled kernel over the tile, in place (numba_runtime's v<op>_tile)
            args = ", ".join(self.code(b) for b in stmt.buffers)
            return [f"_rt.v{stmt.node.op}_tile({args}, {self.code(stmt.count)}){self.note_text(stmt.note)}"]
        if isinstance(stmt, ir.Note):
            return [f"# {stmt.text}"]
        raise TypeError(f"cannot print a {type(stmt).__name__}")

    # ------------------------------------------------------------ entry point

    @property
    def interpreted(self):
        """True when the kernel runs as plain Python on numpy values (nothing compiles it)."""
        return self.decorator is None

    def entry_function(self, inputs, params, dims, outputs, structure, entry):
        # plain positional calls (the hot path) bind directly; anything else (keywords, a wrong
        # count) is bound by name in _cv.call_by_name, which raises InputError naming the problem
        # positional arguments fill the parameters in order: when the last one is given, all are
        read = {"MISSING"}  # the runtime's names the entry reads (as module globals: see entry_globals)
        # scalars the machine code may be given as they are (direct_scalar_lines): what its read
        # refuses (a TypeError or an OverflowError) the entry names with runtime.refused
        direct = [
            (s, p)
            for s, p in zip(inputs, params)
            if s.ndim == 0 and s.dtype in DIRECT_SCALARS and not (self.interpreted or self.standalone)
        ]
        # of those, the ones whose 0-d arrays go on without a test of the rank: the machine code's
        # read (kernel_entry's, or the row blocks' for the same types) refuses another rank with a
        # TypeError
        rank_by_kernel = [(s, p) for s, p in direct if s.dtype in RANK_READ_BY_KERNEL]
        missing = f" or {params[-1]} is _MISSING" if params else ""
        signature = (
            ", ".join(f"{p}=_MISSING" for p in params) + ", /, *more, **named" if params else "*more, **named"
        )
        by_name = (
            f"return _cv.call_by_name({entry}, {literal(self.title)}, "
            f"({''.join(literal(s.name) + ', ' for s in inputs)}), ({''.join(p + ', ' for p in params)}), "
            "more, named)"
        )
        lines = [
            f"def {entry}({signature}):",
            '    """Check and convert the arguments, then run the kernel."""',
            f"    if more or named{missing}:",
        ]
        if params:
            # a call by keyword binds here, one dict lookup per argument not given by position;
            # what cannot bind (a missing argument, an unknown name, a name given twice, one
            # argument too many) is reported by call_by_name, which takes the popped ones as named
            lines.append("        try:")
            for s, p in zip(inputs, params):
                lines.append(f"            if {p} is _MISSING:")
                lines.append(f"                {p} = named.pop({literal(s.name)})")
            lines += ["        except KeyError:", f"            {by_name}", "        if more or named:"]
        lines.append(f"            {by_name}" if params else f"        {by_name}")
        for s, p in zip(inputs, params):
            label = literal(s.name)
            if s.ndim == 0:
                if self.interpreted:
                    # numpy scalars follow IEEE as machine code does; Python floats raise on
                    # 1/0 and 10.0**400 and turn (-8.0)**(1/3) complex
                    lines.append(f"    {p} = _cv.numpy_scalar({p}, {label}, {s.dtype!r})")
                else:
                    rank = p not in {q for _, q in rank_by_kernel}
                    lines += direct_scalar_lines(p, label, s.dtype, self.standalone, read, rank)
            else:
                # C-contiguous and aligned (flags 0x101), as the compiled code's types assume; a
                # read-only array goes to the machine code as it is (a kernel never writes its inputs)
                read |= {"ndarray", s.dtype}
                lines.append(
                    f"    if type({p}) is not _ndarray or {p}.dtype is not _{s.dtype} "
                    f"or {p}.ndim != {s.ndim} or {p}.flags.num & 257 != 257:"
                )
                # an argument kind symgrad's layers above handle (a Dask array stays lazy: the call
                # is split over its row blocks by symgrad.dask_arrays); see runtime.register_array_hook
                if not self.standalone:  # a saved module takes numpy arrays only
                    # (a numpy array is no hooked kind: not asked, 0.2 us saved)
                    lines.append(f"        if type({p}) is not _ndarray and _cv.hooked({p}):")
                    lines.append(
                        f"            return _cv.call_hooked({entry}, ({''.join(q + ', ' for q in params)}))"
                    )
                lines.append(f"        {p} = _cv.array({p}, {label}, {s.ndim}, {s.dtype!r})")
        bound = set()
        for s, p in zip(inputs, params):
            for axis, d in enumerate(s.shape):
                # len() reads axis 0 without making the shape tuple (p is an ndarray of its rank here)
                size = f"len({p})" if axis == 0 else f"{p}.shape[{axis}]"
                if isinstance(d, int):
                    lines.append(f"    if {size} != {d}:")
                    lines.append(f"        raise _cv.fixed_dim_error({literal(s.name)}, {axis}, {size}, {d})")
                elif d.is_Symbol and d.name not in bound and dims.get(d.name) == (p, axis):
                    bound.add(d.name)
                    lines.append(f"    {dim_identifier(d.name)} = {size}")
                else:
                    first_p, first_axis = dims[d.name] if d.is_Symbol else (None, None)
                    first_sym = next(x.name for x, q in zip(inputs, params) if q == first_p)
                    lines.append(f"    if {size} != {dim_text(d)}:")
                    lines.append(
                        f"        raise _cv.dim_error({literal(s.name)}, {axis}, {size}, "
                        f"{literal(d.name)}, {literal(first_sym)}, {first_axis}, {dim_text(d)})"
                    )
        name_of_param = {p: s.name for s, p in zip(inputs, params)}
        for dim, minimum, what in requirements(self.computed):
            where = ", ".join(
                ("" if dim.is_Symbol else f"{sym.name} ")
                + f"from axis {dims[sym.name][1]} of {name_of_param[dims[sym.name][0]]!r}"
                for sym in sorted(dim.free_symbols, key=str)
                if sym.name in dims
            )
            lines.append(f"    if {dim_text(dim)} < {minimum}:")
            lines.append(
                f"        raise _cv.too_small({literal(dim_str(dim))}, {dim_text(dim)}, {minimum}, "
                f"{literal(what)}, {literal(where)})"
            )
        # compiled backends call the machine code built for exactly the checked types
        # (kernel_entry, bound after compiling), skipping the dispatcher's type resolution
        machine_params = params + self.out_params
        call = f"{'kernel' if self.interpreted else 'kernel_entry'}({', '.join(machine_params)})"
        if any(n.op in GATHER_OPS for n in self.computed):
            # index values are data: the kernel checks them and raises IndexError, shown as InputError
            call = f"_cv.checked_indices({call.split('(')[0]}{''.join(', ' + p for p in machine_params)})"
        lines += ["    " + line for line in self.output_allocs(entry=True, read=read)]
        if self.interpreted:
            lines.append("    with _cv.ieee_errors_ignored():")
            lines.append(f"        out = _cv.zero_d_as_scalars({call})")
        else:
            calls = [f"out = {call}"]
            if self.row_extents:
                # a loop of many rows: its row blocks on the threads (codegen/threads.py)
                long = " or ".join(_long(rows, per_row) for rows, per_row in dict.fromkeys(self.row_extents))
                blocks = f"_cv.run_blocks(kernel_blocks, ({''.join(p + ', ' for p in machine_params)}))"
                calls = [f"if {long}:", f"    out = {blocks}", "else:", f"    out = {call}"]
            if direct:
                # numba's read refused a scalar (an array of rank > 0, an int too large for its
                # dtype): the InputError naming it (a try costs a call nothing)
                checks = "".join(f"({p}, {literal(s.name)}, {s.dtype!r}), " for s, p in direct)
                lines += ["    try:", *["        " + c for c in calls]]
                lines += ["    except (TypeError, OverflowError) as _error:"]
                lines.append(f"        raise _cv.refused(_error, ({checks})) from None")
            else:
                lines += ["    " + c for c in calls]
            # machine code boxes every float scalar as a Python float (float64) and every int
            # as a Python int: give float32 and narrow int scalars their dtype back
            items = self.outputs_after_call(len(outputs))
            boxed = [
                f"np.{o.dtype}({item})"
                if o.ndim == 0 and o.dtype not in ("float64", "int64", "bool")
                else item
                for item, o in zip(items, outputs)
            ]
            if boxed != [f"out[{i}]" for i in range(len(outputs))]:
                if "'" in structure or '"' in structure or _WHOLE_OUT.search(structure):
                    # (a structure with keys, or returning the tuple itself: built as it was)
                    lines.append(f"    out = ({', '.join(boxed)},)")
                else:
                    # the returned structure reads each where it stands: no tuple built to be unpacked
                    structure = _OUT_ITEM.sub(lambda m: boxed[int(m.group(1))], structure)
        lines.append(f"    return {structure}")
        return entry_globals(read) + lines


def _commutes(stmt):
    """Is ``stmt`` an add or a mul whose two operands may trade places in its text (one dtype;
    one shape, or elements of a fused loop)?"""
    node = stmt.node
    if node.op not in ("add", "mul") or len(stmt.operands) != 2:
        return False
    a, b = node.inputs
    return a.dtype == b.dtype and (stmt.scalar or a.shape == b.shape)


_OUT_ITEM = re.compile(r"\bout\[(\d+)\]")
_WHOLE_OUT = re.compile(r"\bout\b(?!\[\d+\])")


def passed_outputs(block, outputs, value):
    """[(k, alloc)]: the outputs, by position, whose value is an array an ``Alloc`` at the top of
    ``block`` makes (a fused loop's result), once per node (a second position copies it)."""
    allocs = {id(s.target): s for s in block if isinstance(s, ir.Alloc) and s.target.shape}
    found, seen = [], set()
    for k, node in enumerate(outputs):
        v = value.get(id(node))
        if node.ndim and id(node) not in seen and node.op not in _VIEWS and v is not None and id(v) in allocs:
            found.append((k, allocs[id(v)]))
        seen.add(id(node))
    return found


@dataclass(eq=False)
class OutputPlan:
    """What the kernel does with an output (``Emitter.plan_outputs``). ``node``, ``name`` (its
    name among the outputs) and ``value`` (its IR value). ``copied``: handed on as a fresh copy
    of its value (a view, a value of another name, or an array an earlier output hands on).
    ``passed``: the ``Alloc`` of the array the entry passes for it (None: the kernel returns
    it), which a fused loop fills, its instruction writes (``Instr.into``), or ``put`` (True)
    copies it into."""

    node: Any
    name: str
    value: ir.Value
    copied: bool
    passed: Optional[ir.Alloc] = None
    put: bool = False


def fixed_name(value: ir.Value) -> Optional[str]:
    """The name ``value`` is given (an output's: ``Instr.name``, ``Var.name``), or None."""
    if isinstance(value, ir.If):
        value = value.instr
    return value.name if isinstance(value, (ir.Instr, ir.Var)) else None


def write_into(block: list, plans: list, writes: Callable[[ir.Instr], bool]) -> None:
    """Give the instruction computing an output that ``plans`` copy into a passed array (``put``,
    not ``copied``) that array as its destination (``Instr.into``; the copy is then dropped),
    when ``writes`` says it can write there (a backend's small product) and it is at the top level
    of ``block``: the kernel neither makes the array nor copies it, and the instruction's name
    stays bound to it for any later use. Not an instruction whose name a later statement binds
    again, or whose array one writes into: the passed array would not hold the output."""
    top = {id(s) for s in block if isinstance(s, ir.Instr)}
    written = {id(v) for s in ir.walk(block) for v in _written(s)}
    for plan in plans:
        v = plan.value
        if not plan.put or plan.copied or id(v) not in top or id(v) in written or v.into is not None:
            continue
        if writes(v):
            v.into, plan.put = plan.passed.target, False


def _written(stmt) -> list:
    """The values ``stmt`` binds again or writes into (not an ``Instr`` binding itself)."""
    if isinstance(stmt, (ir.Assign, ir.Alloc, ir.Accum)):
        return [stmt.target]
    if isinstance(stmt, ir.Store):
        return [stmt.array]
    if isinstance(stmt, ir.TileCall):
        return list(stmt.buffers)
    if isinstance(stmt, ir.Bound):
        return [stmt.target]
    return []


def without_allocs(block, passed):
    """``block`` without the top-level ``Alloc``s of the ``passed`` outputs' arrays."""
    allocs = {id(alloc) for _, alloc in passed}
    return [s for s in block if id(s) not in allocs] if allocs else block


def _long(rows, per_row):
    """The entry's test that a loop of ``rows`` rows of ``per_row`` elements each (a loop nest's
    extents after its rows; () for a loop over rows) has ``MIN_ROWS`` elements."""
    if not per_row:
        return _at_least(rows, MIN_ROWS)
    return " * ".join(dim_text(d) for d in (rows, *per_row)) + f" >= {MIN_ROWS}"


def _at_least(dim, rows):
    """The test ``dim >= rows`` as code, one comparison of a dim variable for ``n + k``."""
    if not isinstance(dim, int) and len(dim.free_symbols) == 1:
        (symbol,) = dim.free_symbols
        offset = dim - symbol
        if offset.is_Integer:
            return f"{dim_text(symbol)} >= {rows - int(offset)}"
    return f"{dim_text(dim)} >= {rows}"


def entry_alloc(fill, shape, dtype, read=None):
    """The entry's call allocating an array passed to ``kernel_into``: numpy's ``empty`` or
    ``zeros`` (``fill``) as module globals, a 1-d shape as its length and the dtype left to its
    default for float64, else given as a dtype instance. Each costs numpy time per call: a dtype
    given as a type (``np.float64``) is converted to a dtype on every call, and by keyword parsed
    besides; ``np.empty`` is two lookups. Together about 0.1-0.15 us per array of a small
    kernel's 0.4-3 us (``_empty(n)`` against ``np.empty((n,), np.float64)``). The runtime's
    names used are added to ``read``."""
    read = set() if read is None else read
    fn = "zeros" if fill == "zeros" else "empty"
    read.add(fn)
    size = dim_text(shape[0]) if len(shape) == 1 else shape_text(shape)
    if dtype == "float64":
        return f"_{fn}({size})"
    read.add(dtype)
    return f"_{fn}({size}, _{dtype})"


def entry_globals(names):
    """The module-level lines binding the runtime's ``names`` the entry reads on every call as
    globals ``_<name>`` (``_ndarray = _cv.ndarray``): one dict lookup each, where ``_cv.<name>``
    is two (a 0-d array's checks read three). They stand just above the entry, in its text."""
    lines = [f"_{name} = _cv.{name}" for name in sorted(names)]
    return lines + ["", ""] if lines else []


def direct_scalar_lines(p, label, dtype, typed_by_kind=False, read=None, rank=True):
    """The entry's lines for the scalar parameter ``p`` of a compiled kernel: the kinds the machine
    code reads as ``runtime.scalar`` would convert them go to it as they are, with no call:
    ``runtime.direct_<dtype>`` (one set lookup of the type, the Python float's test for a float64),
    a 0-d array of the dtype (numba reads it with float(), int() or bool(), as ``scalar`` does), a
    Python int (for a float64 or int64; numba's read of one too large for the dtype raises
    OverflowError, which the entry's ``except`` names) and, for a float64, a float subclass.
    Anything else is converted or refused by ``runtime.scalar``. ``typed_by_kind``: the kernel
    is numba's dispatcher (a saved module), which would compile a new version for another kind,
    so only the kinds numba types as ``dtype`` go as they are (``runtime.typed_<dtype>``). The runtime names the lines read are
    added to ``read`` (bound as module globals by ``entry_globals``). ``rank=False``: a 0-d array's
    rank is not tested (an array of any rank of the dtype goes on; the machine code's read refuses
    it, see ``runtime.RANK_READ_BY_KERNEL``)."""
    read = set() if read is None else read
    convert = f"{p} = _cv.scalar({p}, {label}, {dtype!r})"
    if dtype not in DIRECT_SCALARS:
        return [f"    {convert}"]
    if typed_by_kind:
        read.add(f"typed_{dtype}")
        return [f"    if type({p}) not in _typed_{dtype}:", f"        {convert}"]
    read |= {f"direct_{dtype}", "ndarray", dtype}
    zero_d = [
        f"if type({p}) is _ndarray:",
        f"    if {p}.dtype is not _{dtype}{f' or {p}.ndim' if rank else ''}:",
        f"        {convert}",
    ]
    lines = [f"    if type({p}) not in _direct_{dtype}:", *["        " + line for line in zero_d]]
    if dtype == "float64":
        # numba reads a float subclass with float(), as runtime.scalar would
        lines += [f"        elif not isinstance({p}, float):", f"            {convert}"]
    else:
        lines += ["        else:", f"            {convert}"]
    return lines


def find_pairs(block):
    """{id(first): second}: scalar instructions of ``block`` that one runtime call computes together
    (the op records' ``pair``: sin and cos of one operand), ``second`` later in the block, with
    nothing between them rebinding what the operand is built from (a rolled loop's carried value
    is one IR value before and after the statement that updates it). One pass over the block."""
    partner = {r.pair[0]: name for name, r in OPS.items() if r.pair}
    found, pending, by_leaf = {}, {}, {}
    for stmt in block:
        if isinstance(stmt, ir.Instr) and stmt.shape == () and stmt.operands and _on_lanes(stmt):
            record = OPS[stmt.node.op]
            op = stmt.node.op if record.pair else partner.get(stmt.node.op)
            if op is not None:
                key = (op, _value_key(stmt.operands[0]), stmt.lanes, stmt.scalar, stmt.dtype)
                if record.pair:
                    if key not in pending:
                        pending[key] = stmt
                        for leaf in ir.leaves(stmt.operands[0]):
                            by_leaf.setdefault(id(leaf), []).append(key)
                elif key in pending:
                    found[id(pending.pop(key))] = stmt
        for inner in ir.walk([stmt]):
            rebound = ir.defines(inner) + ([inner.array] if isinstance(inner, ir.Store) else [])
            for value in rebound:
                for key in by_leaf.pop(id(value), ()):
                    pending.pop(key, None)
    return found


def _on_lanes(stmt):
    """Is ``stmt`` computed by its op's vector twin (a SIMD pass)? Only those pair: scalar code
    calls libm, whose sin and cos numba compiles for free."""
    return bool(stmt.lanes) and OPS[stmt.node.op].on_lanes(stmt.node)


def _value_key(v):
    """A key equal for one value: the same IR value, or elements at the same index."""
    if isinstance(v, ir.Elem):
        return ("elem", id(v.array), tuple(_value_key(i) for i in v.index))
    if isinstance(v, (ir.Shift, ir.Affine, ir.Row)):
        return (type(v).__name__,) + tuple(
            _value_key(x) if isinstance(x, (ir.Value, ir.Shift, ir.Affine, ir.Row)) else x
            for x in vars(v).values()
        )
    if isinstance(v, (int, str)):
        return v
    return id(v)


def has_loops(nodes):
    """Does the schedule hold a loop (a tuple-valued node, ``sg.scan``)? Rolling leaves such a
    kernel as it is; fusion works on the statements around its loops (what a loop reads stays a
    statement of its own) and branch sinking around and inside them (``branches.sink_in_loops``)."""
    return any(OPS[n.op].tuple_valued for n in nodes)


def with_loop_bodies(outputs, order=None):
    """The nodes the kernel computes: ``topo_order`` of the outputs and of every loop body in it
    (a gather or a slice inside a loop needs the entry's checks as much as one outside).
    ``order``: ``topo_order(outputs)`` when the caller has it (the schedule's nodes, in order)."""
    found, seen = [], set()
    pending = [order if order is not None else topo_order(list(outputs))]
    while pending:
        for node in pending.pop():
            if id(node) in seen:
                continue
            seen.add(id(node))
            found.append(node)
            if OPS[node.op].tuple_valued:
                pending.append(topo_order(list(node.attrs["body"].outputs)))
    return found


def check_loop_lengths(computed, dims, title):
    """Every loop's trip count must be known when the kernel runs: an int, or dims of the inputs.
    ``computed``: the kernel's nodes (``with_loop_bodies``)."""
    for node in computed:
        length = node.attrs.get("length") if OPS[node.op].tuple_valued else None
        if length is None or isinstance(length, int):
            continue
        missing = sorted(sym.name for sym in length.free_symbols if sym.name not in dims)
        if missing:
            raise UnsupportedError(
                f"{title}: a loop's length {dim_str(length)} is unknown when it runs: no input has an "
                f"axis of size {', '.join(missing)}; give length= as an int or as an input's size "
                "(x.shape[0])"
            )


def part_of(stmt, backward_ids):
    """1 if the statement computes a node of the backward part, else 0 (a Note: None)."""
    if isinstance(stmt, ir.If):
        stmt = stmt.instr
    if isinstance(stmt, ir.Instr) or (isinstance(stmt, ir.For) and stmt.node is not None):
        return 1 if id(stmt.node) in backward_ids else 0
    return None


# ops with an operand of index values the kernel bounds-checks
GATHER_OPS = {name for name, op in OPS.items() if op.index_operand}


def requirements(computed):
    """(dim, minimum, what) for every slice or index whose bounds need a large enough dim, and
    every named axis a max or min reduces (at least 1), over ``computed``, the kernel's nodes
    (``with_loop_bodies``)."""
    seen = {}
    for node in computed:
        if node.op == "getitem":
            needs = node.attrs.get("requires", ())
            if not needs:
                continue  # (the repr below walks the operand's graph: a T-step loop's, T times)
            what = f"{node.inputs[0]!r:.40}[{key_text(node.attrs['key'])}]"
        elif OPS[node.op].needs_nonempty:
            # an empty slice has no maximum: every named reduced axis must have an element
            x = node.inputs[0]
            needs = [(x.shape[a], 1) for a in node.attrs["axes"] if not isinstance(x.shape[a], int)]
            what = f"{node.op}({x!r:.40}, axis={tuple(node.attrs['axes'])})"
        else:
            continue
        for dim, minimum in needs:
            # one check per dim, of the largest minimum (it implies the others): a loop over
            # xs[0] ... xs[T - 1] is one check, not T
            key = str(dim)
            if key not in seen or minimum > seen[key][1]:
                seen[key] = (dim, minimum, what)
    return list(seen.values())

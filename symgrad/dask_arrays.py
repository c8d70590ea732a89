"""value_and_grad over Dask arrays: one compiled kernel per row block, run where the data is.

A function made by ``sg.value_and_grad`` accepts Dask arrays for its data
arguments (chunked along the rows) in the same call it takes numpy arrays in::

    vg = sg.value_and_grad(loss, wrt=[w], inputs=[w, X, y])
    value, dw = vg(w0, X_dask, y_dask)      # the data stays on the workers

``symgrad.decompose`` splits the loss into sums over rows of per-row terms and an
affine combination of those sums. Per call:

1. the weights ``G_j`` (the loss's derivative with respect to each sum over rows,
   a function of the parameters only) are computed here;
2. the block kernel runs on every row block (the global row count passed in for
   means) and returns the block's partial sums and partial gradients:

   - when every chunk of the row data is persisted on the cluster (and there is a
     ``dask.distributed`` client), one task per worker thread runs a run of the
     blocks that worker holds, in turn, and adds their partials. The workers share
     the rows in proportion to their threads (blocks held unevenly are fetched once
     by the worker that is short). The parameters and weights travel inside these
     tasks, so each worker thread receives them once per call, and a worker lost
     mid-call takes no parameter with it that another worker would wait for. The
     tasks' results are added here (on the cluster first when there are more than
     ``FAN_IN``). A call costs about one round trip through the scheduler however
     many blocks there are;
   - otherwise (the chunks are still to be computed, or have to be rechunked, or
     there is no client) one task per row block runs in the graph that makes the
     chunks, the partials added in a tree, ``FAN_IN`` per task. The parameters and
     weights are one node of that graph, which every block task depends on: a worker
     receives them once per call (from the scheduler or from another worker). They
     are not scattered: Dask drops the replicas of scattered data it sees no use for,
     a worker lost mid-call could take the only copy with it (a call was seen waiting
     after that), and scattered data cannot be computed again; a graph node can.
     (Either way the parameters pass through the scheduler; above 10 MB of them Dask
     warns, once, that it is sending a large graph);
3. the loss and the rest of its gradient are computed here from the summed values.

The block kernel travels to the workers as its source text (``BlockKernel``); each
worker process loads it once and keeps it (numba's cache on disk makes that a load,
not a compile, on a machine that has compiled it before).
"""

import functools
import os
import threading
import uuid
import warnings

import numpy as np

from . import api, autodiff, decompose
from .codegen import runtime
from .codegen.runtime import kind_ok, load_module
from .errors import InputError, SymgradError, UnsupportedError
from .frontends.trace import is_dask
from .ops import broadcast_to, constant
from .ops import sum as total

# a block larger than this (after rechunking other axes into one) is refused
DEFAULT_MAX_BLOCK_BYTES = 2 * 1024**3


def max_block_bytes():
    try:
        return int(os.environ.get("SYMGRAD_DASK_MAX_BLOCK_BYTES", DEFAULT_MAX_BLOCK_BYTES))
    except ValueError:
        return DEFAULT_MAX_BLOCK_BYTES


class BlockKernel:
    """A compiled function as the workers receive it: its source text and backend. Calling it
    loads the module once per process (from the on-disk cache when it is there)."""

    __slots__ = ("source", "backend", "title")
    _loaded = {}
    _lock = threading.Lock()

    def __init__(self, source, backend, title):
        self.source, self.backend, self.title = source, backend, title

    def __getstate__(self):
        return (self.source, self.backend, self.title)

    def __setstate__(self, state):
        self.source, self.backend, self.title = state

    def entry(self):
        key = (self.backend, self.source)
        fn = self._loaded.get(key)
        if fn is None:
            with self._lock:
                fn = self._loaded.get(key)
                if fn is None:
                    module, _ = load_module(self.source, self.backend)
                    fn = self._loaded[key] = module.call
        return fn

    def __call__(self, *args):
        return tuple(np.asarray(v) if not np.isscalar(v) else v for v in self.entry()(*args))


# partial results added per task: each level of the tree is a round of tasks through the
# scheduler, so a wide fan-in keeps the tree shallow (10 blocks: 2 levels, not 4)
FAN_IN = 8


def _add_partials(*parts):
    """The blocks' partial results added; float32 ones in float64 (``_narrowed`` rounds them once,
    at the end, as the kernels' own float32 sums are)."""
    total = tuple(_widened(x) for x in parts[0])
    for part in parts[1:]:
        total = tuple(x + _widened(y) for x, y in zip(total, part))
    return total


def _widened(value):
    return np.asarray(value, dtype=np.float64) if np.asarray(value).dtype == np.float32 else value


def _narrowed(partials, dtypes):
    return tuple(
        np.asarray(p, dtype=np.float32)[()] if d == "float32" else p for p, d in zip(partials, dtypes)
    )


def _tree_sum(parts, add, until=1):
    """``parts`` added FAN_IN at a time by ``add(*group)`` (a task), level by level, until at most
    ``until`` are left (log_FAN_IN(blocks) levels for one)."""
    while len(parts) > until:
        groups = [parts[i : i + FAN_IN] for i in range(0, len(parts), FAN_IN)]
        parts = [add(*g) if len(g) > 1 else g[0] for g in groups]
    return parts


def _run_blocks(kernel, shipped, width, n_rows, *chunks):
    """On a worker: ``kernel`` on one or more row blocks (``width`` chunks each, in order), after
    the parameters ``shipped``; their partial results added in block order."""
    return _add_partials(
        *(kernel(*shipped, *chunks[i : i + width], n_rows) for i in range(0, len(chunks), width))
    )


def _held_chunks(rows, client):
    """The futures holding every chunk of ``rows`` (row order, one list per array) when all of
    them are persisted on ``client``'s cluster as they are; otherwise None."""
    import dask
    from distributed import futures_of

    held = []
    for a in rows:
        futures = {f.key: f for f in futures_of(a) if f.client is client}
        keys = list(dask.core.flatten(a.__dask_keys__()))
        if not keys or any(k not in futures for k in keys):
            return None
        held.append([futures[k] for k in keys])
    return held


def _groups_by_worker(client, held, row_chunks):
    """Row blocks in runs of one task each, as (blocks, worker address). Every worker takes a
    share of the rows in proportion to its threads: first blocks whose first array's chunk it
    holds, then, if the data sits unevenly, blocks it fetches from another worker (once: Dask
    keeps the copy, and later calls find it there). A worker's blocks are cut into one run per
    thread."""
    threads = {address: max(1, n) for address, n in client.nthreads().items()}
    if not threads:
        return []  # no worker now: the graph waits for one
    where = client.who_has(held[0])
    rows, total_threads = sum(row_chunks), sum(threads.values())
    share = {address: max(rows, 1) * n / total_threads for address, n in threads.items()}
    load = dict.fromkeys(threads, 0)
    taken = {address: [] for address in threads}

    def lightest(candidates):
        return min(candidates, key=lambda address: (load[address] / share[address], address))

    left = []
    for i, future in enumerate(held[0]):
        holders = [a for a in where.get(future.key, ()) if a in threads]
        fits = [a for a in holders if load[a] + row_chunks[i] / 2 <= share[a]]
        if fits:
            address = lightest(fits)
            taken[address].append(i)
            load[address] += row_chunks[i]
        else:
            left.append(i)
    for i in left:
        address = lightest(list(threads))
        taken[address].append(i)
        load[address] += row_chunks[i]
    runs = []
    for address, blocks in taken.items():
        blocks.sort()
        cuts = max(1, min(len(blocks), threads[address]))
        size = sum(row_chunks[i] for i in blocks) or 1
        cut, done = [[] for _ in range(cuts)], 0
        for i in blocks:  # each block to the run its first row falls in
            cut[min(cuts - 1, done * cuts // size)].append(i)
            done += row_chunks[i]
        runs.extend((run, address) for run in cut if run)
    return sorted(runs)


class RowSplit:
    """The compiled pieces of one value_and_grad split over row blocks (see the module doc)."""

    def __init__(self, compiled, wrt, row_dim):
        loss = compiled.outputs[0]
        inputs = list(compiled.inputs)
        plan = decompose.plan_rows(loss, inputs, row_dim)
        chunked = [w.name for w in wrt if any(w is r for r in plan.row_inputs)]
        if chunked:
            raise UnsupportedError(
                f"{compiled.title}: {', '.join(chunked)} {'is' if len(chunked) == 1 else 'are'} split "
                f"into row blocks (first dimension {row_dim}) and differentiated; over Dask arrays "
                "only parameters (inputs without the row dimension) can be differentiated"
            )
        self.plan = plan
        self.wrt = wrt
        backend = compiled.backend
        float_weights = [
            (s, w, g) for s, w, g in zip(plan.block_sums, plan.weights, plan.cotangents) if w is not None
        ]
        params_in = plan.params + [plan.count]
        self.weights = (
            api.compile(
                [g for _, _, g in float_weights], inputs=params_in, backend=backend, name="row_sum_weights"
            )
            if float_weights
            else None
        )
        if plan.block_sums:
            pairing = [total(w * s) for s, w, _ in float_weights]
            partial_loss = pairing[0] if pairing else None
            for p in pairing[1:]:
                partial_loss = partial_loss + p
            grads = (
                autodiff.grad(partial_loss, wrt)
                if partial_loss is not None
                else [_zeros_like(w) for w in wrt]
            )
            block_inputs = plan.params + [w for _, w, _ in float_weights] + plan.row_inputs + [plan.count]
            block = api.compile(
                list(plan.block_sums) + list(grads), inputs=block_inputs, backend=backend, name="row_block"
            )
            self.block = BlockKernel(block.source, backend, block.title)
            self._block_compiled = block  # keeps this process's copy loaded
        else:
            self.block = None
        combine_out = [plan.combine] + autodiff.grad(plan.combine, wrt)
        self.combine = api.compile(
            combine_out, inputs=plan.params + plan.sums + [plan.count], backend=backend, name="row_combine"
        )


def _zeros_like(w):
    return broadcast_to(constant(0, w.dtype), w.shape)


_state_lock = threading.Lock()


def _dask_state(compiled):
    """The row splits made for ``compiled`` (a value_and_grad: api marks it ``_differentiated``)."""
    with _state_lock:
        info = getattr(compiled, "_dask", None)
        if info is None:
            wrt, single = compiled._differentiated
            info = compiled._dask = {
                "wrt": list(wrt),
                "single": single,
                "splits": {},
                "lock": threading.Lock(),
            }
    return info


def call_entry(entry, args):
    """A generated entry was called with a Dask array: the call its Compiled makes of it."""
    owner = runtime.owner_of(entry)
    if owner is None or getattr(owner, "_differentiated", None) is None:
        raise InputError(
            "Dask arrays can be passed to functions made by sg.value_and_grad; "
            "this compiled function takes numpy arrays (call .compute() first)"
        )
    return value_and_grad_over_blocks(owner, list(args))


# a generated entry's slow path hands a call with a Dask array here (the entry imports no Dask code)
runtime.register_array_hook(is_dask, call_entry)


def _split_for(compiled, row_dim):
    info = _dask_state(compiled)
    with info["lock"]:
        split = info["splits"].get(row_dim)
        if split is None:
            split = info["splits"][row_dim] = RowSplit(compiled, info["wrt"], row_dim)
    return split


def _as_row_array(value, symbol, row_chunks, like_name):
    """``value`` as a Dask array of ``symbol``'s rank and dtype, chunked by ``row_chunks`` along
    axis 0 and in one chunk along every other axis."""
    import dask.array as da

    if not hasattr(value, "chunks"):
        value = np.asarray(value)
        if value.ndim != symbol.ndim:
            raise InputError(
                f"argument {symbol.name!r} must have rank {symbol.ndim}, got an array of "
                f"shape {value.shape} (rank {value.ndim})"
            )
        if value.shape[0] != sum(row_chunks):
            raise InputError(
                f"argument {symbol.name!r}: dimension 0 is {value.shape[0]}, but "
                f"{like_name!r} has {sum(row_chunks)} rows"
            )
        value = da.from_array(value, chunks=(row_chunks,) + tuple(value.shape[1:]))
    if value.ndim != symbol.ndim:
        raise InputError(
            f"argument {symbol.name!r} must have rank {symbol.ndim}, got a Dask array of "
            f"shape {value.shape} (rank {value.ndim})"
        )
    if not kind_ok(value.dtype.kind, symbol.dtype):
        raise InputError(
            f"argument {symbol.name!r} must hold {symbol.dtype} values, got a Dask array "
            f"of dtype {value.dtype}"
        )
    if value.dtype != symbol.dtype:
        value = value.astype(symbol.dtype)
    if any(np.isnan(c) for c in value.chunks[0]):
        raise InputError(
            f"argument {symbol.name!r}: the Dask array's chunk sizes are unknown; call "
            f"{symbol.name}.compute_chunk_sizes() first"
        )
    if value.shape[0] != sum(row_chunks):
        raise InputError(
            f"argument {symbol.name!r}: dimension 0 is {value.shape[0]}, but "
            f"{like_name!r} has {sum(row_chunks)} rows"
        )
    if any(len(c) > 1 for c in value.chunks[1:]):
        rows = max(row_chunks) if row_chunks else 0
        size = rows * int(np.prod(value.shape[1:])) * value.dtype.itemsize
        if size > max_block_bytes():
            raise InputError(
                f"argument {symbol.name!r} is chunked along axis 1 or later (chunks {value.chunksize}); "
                f"one row block with whole rows would take {_size_text(size)}, more than the "
                f"limit of {_size_text(max_block_bytes())} (SYMGRAD_DASK_MAX_BLOCK_BYTES); chunk "
                "it along the rows only"
            )
        warnings.warn(
            f"symgrad: argument {symbol.name!r} is chunked along axis 1 or later "
            f"(chunks {value.chunksize}); rechunking it into whole rows (blocks of up to "
            f"{_size_text(size)}). Chunk along the rows only to avoid this",
            RuntimeWarning,
            stacklevel=5,
        )
        value = value.rechunk((row_chunks,) + tuple(value.shape[1:]))
    elif tuple(value.chunks[0]) != tuple(row_chunks):
        value = value.rechunk({0: row_chunks})
    return value


def _size_text(size):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024


def _client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def value_and_grad_over_blocks(compiled, args):
    """``compiled(*args)`` where some arguments are Dask arrays; see the module docstring."""
    try:
        import dask
    except ImportError:
        raise UnsupportedError(
            "Dask arrays were passed, but Dask is not installed (pip install 'symgrad[dask]')"
        ) from None
    info = _dask_state(compiled)  # call_entry finds only value_and_grad functions
    inputs = list(compiled.inputs)
    lazy = [s for s, a in zip(inputs, args) if is_dask(a)]
    for s in lazy:
        if s.ndim == 0:
            raise InputError(f"argument {s.name!r} is a scalar; pass a number, not a Dask array")
    row_dim = decompose.row_dimension(lazy)
    split = _split_for(compiled, row_dim)
    plan = split.plan
    values = dict(zip((s.name for s in inputs), args))

    first = next(s for s in inputs if is_dask(values[s.name]))
    first_value = values[first.name]
    if first_value.ndim != first.ndim:
        raise InputError(
            f"argument {first.name!r} must have rank {first.ndim}, got a Dask array of "
            f"shape {first_value.shape} (rank {first_value.ndim})"
        )
    row_chunks = tuple(first_value.chunks[0])
    if any(np.isnan(c) for c in row_chunks):
        raise InputError(
            f"argument {first.name!r}: the Dask array's chunk sizes are unknown; call "
            f"{first.name}.compute_chunk_sizes() first"
        )
    rows = [_as_row_array(values[s.name], s, row_chunks, first.name) for s in plan.row_inputs]
    params = [values[s.name] for s in plan.params]  # row_dimension made sure none is lazy
    n_rows = float(sum(row_chunks))

    # 1. the weights of the sums over rows: functions of the parameters only
    weights = list(split.weights(*params, n_rows)) if split.weights is not None else []
    partials = None
    if split.block is not None:
        shipped = params + weights
        client = _client()
        held = _held_chunks(rows, client) if client is not None else None
        runs = _groups_by_worker(client, held, row_chunks) if held is not None else []
        try:
            if runs:
                # 2. the data is persisted: one task per worker thread runs the blocks it holds,
                # the parameters inside the task
                tasks = [
                    client.submit(
                        _run_blocks,
                        split.block,
                        tuple(shipped),
                        len(rows),
                        n_rows,
                        *(h[i] for i in run for h in held),
                        pure=False,
                        workers=[address],
                        allow_other_workers=True,
                    )
                    for run, address in runs
                ]
                # many workers: add on the cluster first, the last few here
                tasks = _tree_sum(
                    tasks, functools.partial(client.submit, _add_partials, pure=False), until=FAN_IN
                )
                partials = _add_partials(*client.gather(tasks))
            else:
                # 2. one task per row block (computed in the same graph), the parameters one node
                # of the graph that the blocks depend on, partials summed in a tree
                shared = dask.delayed(tuple(shipped), name=f"symgrad-parameters-{uuid.uuid4().hex}")
                blocks = [a.to_delayed().reshape(-1) for a in rows]
                run = dask.delayed(_run_blocks, pure=True)
                parts = [
                    run(split.block, shared, len(rows), n_rows, *(b[i] for b in blocks))
                    for i in range(len(row_chunks))
                ]
                (total,) = _tree_sum(parts, dask.delayed(_add_partials, pure=True))
                (partials,) = dask.compute(total)
        except SymgradError:
            raise
        except Exception as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(
                    f"symgrad: {compiled.title} over Dask arrays failed while running the "
                    "row blocks on the scheduler; no partial result was used"
                )
            raise
    k = len(plan.sums)
    if partials is not None:
        partials = _narrowed(partials, [s.dtype for s in plan.block_sums] + [w.dtype for w in split.wrt])
    sums = list(partials[:k]) if partials is not None else []
    # 3. the loss and the rest of the gradient from the summed values
    out = split.combine(*params, *sums, n_rows)
    value, grads = out[0], list(out[1:])
    if partials is not None:
        grads = [g + p for g, p in zip(grads, partials[k:])]
    if info["single"]:
        return value, grads[0]
    return value, tuple(grads)

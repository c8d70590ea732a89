"""How the numba backend's kernels allocate the arrays their fused loops write.

numba takes an array's memory from ``malloc``. glibc's malloc serves an allocation of 32 MiB or
more (its largest mmap threshold) with a fresh ``mmap`` every call, whose first touch faults
once per 4 KiB page (a 51 MB per-example gradient: 12,500 faults, about half its kernel's
time); a smaller one comes back from the heap after the first call, already mapped. numpy asks
the kernel for huge pages on its large allocations (``madvise(MADV_HUGEPAGE)``), so an array
numpy makes faults once per 2 MiB. ``empty`` and ``zeros`` do the same for the generated code,
from ``HUGE_BYTES``: the advice is given before the first write; a smaller array costs one
comparison more than ``np.empty`` (advising heap memory that is already mapped would only
cost a system call). Outside Linux the advice is skipped.
"""

import sys

import numba
import numpy as np
from numba.core import types

_JIT = dict(cache=True, nogil=True, error_model="numpy")

HUGE_BYTES = 1 << 25  # 32 MiB: glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
_PAGE = 4096
_MADV_HUGEPAGE = 14  # Linux <sys/mman.h>
_LINUX = sys.platform.startswith("linux")
# libc's madvise(addr, length, advice), linked by name (a kernel calling it stays cacheable)
_madvise = types.ExternalFunction("madvise", types.intc(types.uintp, types.uintp, types.intc))


@numba.njit(**_JIT)
def advise(a):
    """``a`` (just allocated, not yet written) with its whole pages advised to be huge when it
    holds HUGE_BYTES or more."""
    if _LINUX:
        nbytes = a.size * a.itemsize
        if nbytes >= HUGE_BYTES:
            start = (a.ctypes.data + _PAGE - 1) & ~(_PAGE - 1)
            _madvise(start, a.ctypes.data + nbytes - start, _MADV_HUGEPAGE)
    return a


@numba.njit(**_JIT)
def empty(shape, dtype):
    """np.empty(shape, dtype), on huge pages when large."""
    return advise(np.empty(shape, dtype=dtype))


@numba.njit(**_JIT)
def zeros(shape, dtype):
    """np.zeros(shape, dtype), on huge pages when large (advised before the zeros are written)."""
    a = advise(np.empty(shape, dtype=dtype))
    a.fill(0)
    return a

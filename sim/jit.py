"""The one place that sets numba flags, and where compiled kernels are cached.

fastmath stays off: it lets LLVM reorder float math, which would break bit-for-bit
determinism across builds, and assume no NaN, which net/aoi.py relies on (a NaN position
marks an entity that is not in the scan). parallel stays off: on 2 cores it only pays off near 100k
players (measured on a 2-core machine), and serial loops keep event order deterministic.

Cache: numba keys a cached kernel on its own source file only, so editing a kernel that
others call (grid, rng, msgpack writers) would leave callers stale. We key the cache
directory on a fingerprint of every kernel source instead: any edit means a fresh compile.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

KERNEL_FLAGS = dict(cache=True, nogil=True, fastmath=False, parallel=False, boundscheck=False)

# Where kernels live: whole packages, and single kernel modules of other layers (so an
# edit elsewhere in those layers does not recompile everything).
_KERNEL_PACKAGES = ("sim", "net")
_KERNEL_MODULES = ("store/claim_json.py",)


def _sources_fingerprint() -> str:
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(numba.__version__.encode(), digest_size=8)
    paths = [p for package in _KERNEL_PACKAGES for p in sorted((root / package).glob("*.py"))]
    for path in paths + [root / m for m in _KERNEL_MODULES]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _choose_cache_dir() -> None:
    chosen = os.environ.get("NUMBA_CACHE_DIR")  # the operator's root, still keyed below
    base = Path(chosen) if chosen else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xmarks" / "numba"
    numba.config.CACHE_DIR = str(base / _sources_fingerprint())


_choose_cache_dir()


def kernel(fn=None, *, inline: bool = False):
    """Compile `fn` as a nopython, cached, GIL-free kernel with the house flags.

    inline=True inlines it into every kernel that calls it, at numba's level: for helpers
    called once per client or entity with many array arguments, where a real call (array
    structs passed field by field, their references counted) costs more than the work.
    """
    if fn is None:
        return lambda f: kernel(f, inline=inline)
    if inline:
        return njit(inline="always", **KERNEL_FLAGS)(fn)
    return njit(**KERNEL_FLAGS)(fn)


def bind(dispatcher, *args):
    """The compiled entry point of kernel `dispatcher` for the types of `args`.

    Calling a kernel through its dispatcher costs Python allocations on every call: the
    dispatcher types each argument (a NamedTuple of rules or arrays is typed element by
    element), about 3 objects per argument. The entry point skips that and only unboxes,
    so a tick's calls allocate next to nothing. Bind once per call site whose argument
    types never change (the same preallocated arrays every tick); the entry point
    rejects arguments of another type with a TypeError rather than misreading them.
    """
    sig = tuple(dispatcher.typeof_pyval(a) for a in args)
    dispatcher.compile(sig)  # loads from numba's cache when it can
    return dispatcher.overloads[sig].entry_point


@intrinsic
def borrowed(typingctx, arr):
    """arr without its reference count: the same array (data, shape, strides), whose
    meminfo is null, so numba's increfs and decrefs of it, and of every view taken from
    it, do nothing.

    Why: numba counts references to an array each time it is passed to an inlined helper
    or sliced, with an atomic add on the array's meminfo: in the encoder's per-client
    loop that was about a hundred atomics per client, a sixth of the encode time at 10k
    players (measured against non-atomic counts). A kernel whose caller holds its
    argument arrays for the whole call may borrow them once at its top and use the
    borrowed names in its loops. Never return a borrowed array or store it anywhere that
    outlives the call.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        alias = context.make_array(signature.args[0])(context, builder, value=args[0])
        alias.meminfo = cgutils.get_null_value(alias.meminfo.type)
        return alias._getvalue()

    return arr(arr), codegen


@intrinsic
def prefetch(typingctx, arr, flat):
    """Ask the CPU to bring the cache line holding element `flat` (a flat index into the
    C-contiguous arr) towards L1, without waiting for it (llvm.prefetch: no fault, no
    effect on results). For a loop that knows which rows its next iteration will read."""
    if not isinstance(arr, types.Array) or not isinstance(flat, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        arr_t, flat_t = signature.args
        ary = context.make_array(arr_t)(context, builder, value=args[0])
        i8p = ir.IntType(8).as_pointer()
        itemsize = context.get_constant(types.intp, arr_t.dtype.bitwidth // 8)
        offset = builder.mul(context.cast(builder, args[1], flat_t, types.intp), itemsize)
        address = builder.gep(builder.bitcast(ary.data, i8p), [offset])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, keep in all cache levels, data cache
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, flat), codegen

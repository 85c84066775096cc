"""Memory on large images: row bands for the formula metrics, a clear error for the others.

(Not :mod:`percepmetric.memory`, which tunes malloc for loops of same-sized batches.)

**Row bands.** PSNR, L2, L1, SSIM and MS-SSIM are means of per-pixel (or per-window) maps, so
they can be computed over horizontal bands of rows and the bands' sums added up: the same
numbers to float rounding. Each metric estimates the bytes of temporaries its unbanded formula
would allocate per row of the image; only when the whole image's exceed
:data:`BAND_BUDGET_BYTES` (1 GiB) does it work in bands of :func:`band_rows` rows, each within
that budget. Smaller images take the unbanded path, unchanged.

**A one-line error instead.** LPIPS, DISTS, ST-LPIPS (convolutional networks over the whole
image) and FSIM (log-Gabor filtering through the FFT of the whole image) cannot be split into
tiles without changing their numbers. Before they allocate anything they compare the memory a
pair needs (:func:`network_activation_bytes` for the networks, the metric's own estimate for
FSIM) with :func:`available_memory`, and raise :class:`~percepmetric.errors.InputError` with both
numbers when it does not fit (:func:`check_fits`); an allocation that fails anyway (the estimate
is an estimate) becomes the same one-line error (:func:`out_of_memory_as_input_error`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InputError

#: Bytes of temporaries above which the formula metrics (PSNR, L2, L1, SSIM, MS-SSIM) work in
#: row bands (read when called: tests lower it to force bands on small images).
BAND_BUDGET_BYTES = 1 << 30

#: What the messages in this module call a gigabyte (as the benchmark's table does).
_GB = 1e9


# ---------------------------------------------------------------- row bands

def band_rows(rows: int, bytes_per_row: float, halo: int = 0) -> int | None:
    """Rows per band so that one band (its ``rows`` plus ``halo`` rows shared with the next band)
    takes at most :data:`BAND_BUDGET_BYTES` of temporaries at ``bytes_per_row``; ``None`` when the
    whole image (``rows + halo``) fits, i.e. no banding. At least one row per band."""
    budget = BAND_BUDGET_BYTES
    if bytes_per_row * (rows + halo) <= budget:
        return None
    per_band = max(1, int(budget // max(bytes_per_row, 1.0)) - halo)
    return per_band if per_band < rows else None


def bands(rows: int, per_band: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive bands of ``per_band`` rows covering ``0..rows``."""
    for start in range(0, rows, per_band):
        yield start, min(rows, start + per_band)


def accumulator_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype band sums are accumulated in: float64 (MPS has none: float32 there), or the
    tensor's own dtype when that is wider."""
    wide = torch.float32 if t.device.type == "mps" else torch.float64
    return torch.promote_types(t.dtype, wide) if t.is_floating_point() else wide


def wants_grad(*tensors: torch.Tensor) -> bool:
    """Autograd would record an operation on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ---------------------------------------------------------------- available memory

def available_memory(device: torch.device | str) -> int | None:
    """Bytes a computation on ``device`` may still allocate, or ``None`` where unknown (then
    no check is made).

    CUDA: the device's free memory (``torch.cuda.mem_get_info``) plus what torch's caching
    allocator holds unused. CPU on Linux: ``MemAvailable`` of ``/proc/meminfo``, lowered to the
    room left under the process's address-space limit (``ulimit -v``: the limit minus the
    current ``VmSize``) and under a cgroup v2 memory limit (``memory.max``, counting its
    reclaimable page cache as free). Other devices and platforms: ``None``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return None
    fields = _proc_fields("/proc/meminfo")
    if "MemAvailable" not in fields:
        return None
    import resource  # Unix only: imported on Linux

    limits = [fields["MemAvailable"]]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    vm_size = _proc_fields("/proc/self/status").get("VmSize")
    if soft != resource.RLIM_INFINITY and vm_size is not None:
        limits.append(max(0, soft - vm_size))
    cgroup = _cgroup_room()
    if cgroup is not None:
        limits.append(cgroup)
    return int(min(limits))


def _proc_fields(path: str) -> dict[str, int]:
    """``Name: <n> kB`` lines of a /proc file, in bytes."""
    fields: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    fields[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields


def _cgroup_room(root: str = "/sys/fs/cgroup") -> int | None:
    """Room under this process's cgroup v2 memory limit, or None (no limit, no cgroup v2)."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line.strip().split("::", 1)[1] for line in f if line.startswith("0::")), None)
        if path is None:
            return None
        folder = os.path.join(root, path.lstrip("/"))
        with open(os.path.join(folder, "memory.max")) as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(folder, "memory.current")) as f:
            used = int(f.read())
        with open(os.path.join(folder, "memory.stat")) as f:
            stat = dict(line.split() for line in f if line.count(" ") == 1)
        return max(0, int(limit) - used + int(stat.get("inactive_file", 0)))
    except (OSError, ValueError, StopIteration, IndexError):
        return None


# ---------------------------------------------------------------- the one-line error

def _gb(n: float) -> str:
    """Bytes for a message: ``12.3 GB``, ``85 MB``, ``100 kB`` (decimal units)."""
    if n >= 0.1 * _GB:
        return f"{n / _GB:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def describe(images: Sequence[torch.Tensor]) -> str:
    """``"a 10000x10000 image pair"``, ``"a 512x512 image triplet"``, ``"66 images of 64x64"``:
    what a message is about, from the batches of one call."""
    h, w = images[0].shape[-2], images[0].shape[-1]
    total = sum(int(t.shape[0]) for t in images)
    if total == len(images) and len(images) in (2, 3):
        return f"a {h}x{w} image {'pair' if total == 2 else 'triplet'}"
    return f"a {h}x{w} image" if total == 1 else f"{total} images of {h}x{w}"


def memory_message(metric: str, what: str, need: float | None, available: float | None, device: torch.device,
                   hint: str = "", failed: bool = False) -> str:
    """The one line both errors give: what needs how much, what is available, what to do.

    ``failed``: an allocation failed (rather than the estimate exceeding what is available)."""
    room = f"{_gb(available)} available" if available is not None else "available memory unknown"
    advice = hint or "compare smaller images (downscaled, or crops of them)"
    if failed:
        estimate = f"estimated {_gb(need)}; " if need is not None else ""
        return f"{metric}: {what} ran out of memory on {device} ({estimate}{room}): {advice}"
    return f"{metric}: {what} needs about {_gb(need or 0)} of memory, more than the {room} on {device}: {advice}"


def check_fits(metric: str, what: str, need: float, device: torch.device, hint: str = "") -> None:
    """Raise the one-line :class:`InputError` when ``need`` bytes exceed :func:`available_memory`
    (no check where that is unknown)."""
    available = available_memory(device)
    if available is not None and need > available:
        raise InputError(memory_message(metric, what, need, available, device, hint))


_OUT_OF_MEMORY_TEXT = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory",
                       "not enough memory", "std::bad_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: torch's ``OutOfMemoryError`` (CUDA and others), the CPU allocator's
    ``RuntimeError`` (``DefaultCPUAllocator: can't allocate memory`` / ``not enough memory``),
    a C++ ``bad_alloc``, or Python's ``MemoryError``."""
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(exc, (out_of_memory, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)


@contextlib.contextmanager
def out_of_memory_as_input_error(metric: str, what: str, need: float | None, device: torch.device,
                                 hint: str = "") -> Iterator[None]:
    """Inside: an allocation that fails (:func:`is_out_of_memory`) becomes a one-line
    :class:`InputError` saying so, with the estimate and what is available now; the original
    error is its cause."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        available = available_memory(device)
        raise InputError(memory_message(metric, what, need, available, device, hint, failed=True)) from exc


def memory_guard(metric: str, images: Sequence[torch.Tensor], need: float,
                 hint: str = "") -> contextlib.AbstractContextManager[None]:
    """A context for a computation on ``images`` (for the message and the device) that needs
    ``need`` bytes: :func:`check_fits` on entering, :func:`out_of_memory_as_input_error` around
    the block.

    While ``torch.compile`` traces the call (``torch.compiler.is_compiling()``) it does nothing
    (a ``nullcontext``): reading ``/proc`` or the CUDA allocator is no tensor operation and would
    split the compiled graph on every call. A compiled caller loses nothing it needs: it chose
    its shapes when it compiled (a new shape recompiles), and an image too large for memory
    fails on the first call with the allocator's own error, as in any compiled code.
    """
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    return _guarded(metric, images, need, hint)


@contextlib.contextmanager
def _guarded(metric: str, images: Sequence[torch.Tensor], need: float, hint: str) -> Iterator[None]:
    what, device = describe(images), images[0].device
    check_fits(metric, what, need, device, hint)
    with out_of_memory_as_input_error(metric, what, need, device, hint):
        yield


# ---------------------------------------------------------------- what a network needs

def layer_output_shapes(layers: Iterable[nn.Module], shape: Sequence[int]) -> list[tuple[torch.Size, bool]]:
    """``(output shape, in place)`` of each layer run in turn on an input of ``shape``, found on
    the meta device (shapes only: nothing is allocated or computed). ``in place``: the layer
    writes into its input (``ReLU(inplace=True)``), so its output takes no memory of its own."""
    # float32 throughout, whatever the network's dtype: shapes do not depend on it.
    h = torch.empty(tuple(shape), device="meta", dtype=torch.float32)
    shapes = []
    for layer in layers:
        state = {name: torch.empty_like(t, device="meta", dtype=torch.float32 if t.is_floating_point() else t.dtype)
                 for name, t in (*layer.named_parameters(), *layer.named_buffers())}
        h = torch.func.functional_call(layer, state, (h,))
        shapes.append((h.shape, bool(getattr(layer, "inplace", False))))
    return shapes


def network_activation_bytes(layers: Sequence[nn.Module], shape: Sequence[int], itemsize: int,
                             keep_all: bool) -> int:
    """Bytes of a network's activations for a batch of ``shape`` ``(B,C,H,W)``: the input plus,
    when ``keep_all`` (autograd keeps every activation for the backward pass), twice the sum of
    every layer's output (the formula on the features keeps tensors of their size too: measured
    1.9x the activations for LPIPS-alex, 1.2x for DISTS, forward only; the backward pass needs
    more), else (layers run one after the other, each output freed once the next layer has
    used it) the largest input + output of one layer."""
    outputs = layer_output_shapes(layers, shape)
    sizes = [int(torch.Size(shape).numel())] + [0 if inplace else s.numel() for s, inplace in outputs]
    if keep_all:
        total = 2 * sum(sizes)
    else:
        # An in-place layer's output is its input: the next layer's input is the last real output.
        largest, previous = 0, sizes[0]
        for size in sizes[1:]:
            if size:
                largest, previous = max(largest, previous + size), size
        total = sizes[0] + largest
    return total * itemsize

"""SIEVE's custom-float weights as stored in a bundle, and the loader that expands them.

A custom-float little model (`adaptinf build little`, thesis 4.4.1) is two files:
- `X.onnx`, the graph. Each compressed weight is an initializer with external data at
  location `X.weights`: the float32 file the weights expand to, which is never stored;
- `X.cfw`, the weights packed in their formats: per tensor, n codes of
  1 + e_bw + m_bw bits (sign, exponent field, mantissa), bit-packed. A tensor whose
  zeros make it cheaper is stored as a non-zero bitmap plus the non-zeros' codes, the
  same rule as the manifest's size_bytes.

A value is ±2^(E - bias) × (1 + M / 2^m_bw) for an exponent field E in [1, 2^e_bw - 1];
E = 0 is zero. The engines hand the expanded tensors to onnxruntime in memory
(SessionOptions.add_external_initializers) and to TensorRT's parser as the `X.weights`
file in a scratch directory, so both compute in float32 on exactly the stored values.

The .cfw file is msgpack: {"format": FORMAT, "version": 1, "tensors": [...]}, each tensor
{"name", "shape", "e_bw", "m_bw", "bias", "layout": "dense" | "bitmap", "codes", and
"bitmap" for the bitmap layout}. The graph's external-data offsets are the tensors'
places, in this order, in the expanded file (`expanded_offsets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np

FORMAT = "adaptinf-custom-float-weights"
VERSION = 1
SUFFIX = ".cfw"


class PackedWeightsError(ValueError):
    """A .cfw file that cannot be read, or values a format cannot hold."""


@dataclass(frozen=True)
class Format:
    """±2^(e - bias) × 1.m with e_bw exponent bits and m_bw mantissa bits (e = 0 is zero)."""
    e_bw: int
    m_bw: int
    bias: int

    @property
    def bits(self) -> int:
        return 1 + self.e_bw + self.m_bw      # sign + exponent + mantissa

    def check(self) -> None:
        if not (1 <= self.e_bw <= 8 and 0 <= self.m_bw <= 23):
            raise PackedWeightsError(f"format e_bw={self.e_bw}, m_bw={self.m_bw} is outside float32's "
                                     "(1-8 exponent bits, 0-23 mantissa bits)")


def packed_path(onnx_path: Path | str) -> Path:
    return Path(onnx_path).with_suffix(SUFFIX)


def expanded_location(onnx_path: Path | str) -> str:
    """The external-data file name the graph refers to (never stored: the loader makes it)."""
    return Path(onnx_path).with_suffix(".weights").name


# --- one tensor ---------------------------------------------------------------------------

def _pack_bits(codes: np.ndarray, bits: int) -> bytes:
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((codes[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def _unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    if len(data) != math.ceil(count * bits / 8):
        raise PackedWeightsError(f"{len(data)} bytes of codes for {count} values of {bits} bits "
                                 f"(expected {math.ceil(count * bits / 8)})")
    flat = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
    return flat.astype(np.uint32) @ (np.uint32(1) << np.arange(bits - 1, -1, -1, dtype=np.uint32))


def encode(values: np.ndarray, fmt: Format) -> np.ndarray:
    """Codes of float32 values that `fmt` holds exactly; anything else is an error (a
    silent rounding here would change the model the bundle's accuracy was measured on)."""
    fmt.check()
    x = np.asarray(values, np.float32).ravel()
    sign = np.signbit(x) & (x != 0)
    fraction, exponent = np.frexp(np.abs(x).astype(np.float64))        # |x| = f × 2^k, f in [0.5, 1)
    field = np.where(x == 0, 0, exponent - 1 + fmt.bias)
    mantissa = np.where(x == 0, 0.0, (2 * fraction - 1) * (1 << fmt.m_bw))
    ok = (x == 0) | ((field >= 1) & (field < (1 << fmt.e_bw)) & (mantissa == np.floor(mantissa)))
    if not ok.all():
        bad = x[~ok][0]
        raise PackedWeightsError(f"{int((~ok).sum())} values are not in format {fmt} (e.g. {bad!r}): "
                                 "quantize the weights to their format before packing")
    codes = (sign.astype(np.uint32) << (fmt.e_bw + fmt.m_bw)) | (field.astype(np.uint32) << fmt.m_bw) \
        | mantissa.astype(np.uint32)
    return codes


def decode(codes: np.ndarray, fmt: Format) -> np.ndarray:
    field = (codes >> fmt.m_bw) & ((1 << fmt.e_bw) - 1)
    mantissa = codes & ((1 << fmt.m_bw) - 1)
    sign = np.where((codes >> (fmt.e_bw + fmt.m_bw)) & 1, -1.0, 1.0)
    magnitude = np.ldexp(1.0 + mantissa / float(1 << fmt.m_bw), field.astype(np.int64) - fmt.bias)
    return np.where(field == 0, 0.0, sign * magnitude).astype(np.float32)


def pack_tensor(name: str, values: np.ndarray, fmt: Format) -> dict:
    """One tensor's entry: dense codes, or a non-zero bitmap and the non-zeros' codes,
    whichever is smaller."""
    x = np.asarray(values, np.float32)
    codes = encode(x, fmt)
    nonzero = x.ravel() != 0
    entry = {"name": name, "shape": list(x.shape), "e_bw": fmt.e_bw, "m_bw": fmt.m_bw, "bias": fmt.bias}
    if x.size + int(nonzero.sum()) * fmt.bits < x.size * fmt.bits:
        return {**entry, "layout": "bitmap", "bitmap": np.packbits(nonzero).tobytes(),
                "codes": _pack_bits(codes[nonzero], fmt.bits)}
    return {**entry, "layout": "dense", "codes": _pack_bits(codes, fmt.bits)}


def unpack_tensor(entry: dict) -> tuple[str, np.ndarray]:
    try:
        name, shape = str(entry["name"]), [int(d) for d in entry["shape"]]
        fmt = Format(int(entry["e_bw"]), int(entry["m_bw"]), int(entry["bias"]))
        layout, codes = entry["layout"], entry["codes"]
    except (KeyError, TypeError, ValueError) as exc:
        raise PackedWeightsError(f"a tensor entry lacks or garbles a field ({exc})") from None
    fmt.check()
    size = math.prod(shape)
    if layout == "dense":
        return name, decode(_unpack_bits(codes, size, fmt.bits), fmt).reshape(shape)
    if layout == "bitmap":
        bitmap = entry.get("bitmap", b"")
        if len(bitmap) != math.ceil(size / 8):
            raise PackedWeightsError(f"tensor {name}: a {len(bitmap)}-byte bitmap for {size} values")
        nonzero = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=size).astype(bool)
        out = np.zeros(size, np.float32)
        out[nonzero] = decode(_unpack_bits(codes, int(nonzero.sum()), fmt.bits), fmt)
        return name, out.reshape(shape)
    raise PackedWeightsError(f"tensor {name}: unknown layout {layout!r} (dense or bitmap)")


# --- a file -------------------------------------------------------------------------------

def dumps(entries: list[dict]) -> bytes:
    return msgpack.packb({"format": FORMAT, "version": VERSION, "tensors": entries}, use_bin_type=True)


def loads(data: bytes, what: str = "packed weights") -> list[tuple[str, np.ndarray]]:
    """(name, float32 array) per tensor, in stored order."""
    try:
        doc = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise PackedWeightsError(f"{what} is not a msgpack document ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PackedWeightsError(f"{what} is not an {FORMAT} file")
    if doc.get("version") != VERSION:
        raise PackedWeightsError(f"{what} is version {doc.get('version')!r}; this adaptinf reads version {VERSION}")
    tensors = doc.get("tensors")
    if not isinstance(tensors, list):
        raise PackedWeightsError(f"{what} has no tensor list")
    try:
        return [unpack_tensor(t) for t in tensors]
    except PackedWeightsError as exc:
        raise PackedWeightsError(f"{what}: {exc}") from None


def load_packed(onnx_path: Path | str) -> list[tuple[str, np.ndarray]] | None:
    """The expanded weights of a graph stored with a .cfw beside it; None for a plain graph."""
    path = packed_path(onnx_path)
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PackedWeightsError(f"cannot read {path}: {exc.strerror}") from None
    return loads(data, str(path))


def add_to_session_options(options, onnx_path: Path | str) -> list:
    """Give onnxruntime a graph's packed weights, expanded, in memory (a plain graph: nothing).
    The OrtValues returned only point at their arrays: keep them until the session is created,
    which copies them in."""
    packed = load_packed(onnx_path)
    if not packed:
        return []
    import onnxruntime as ort

    values = [ort.OrtValue.ortvalue_from_numpy(array) for _, array in packed]
    options.add_external_initializers([name for name, _ in packed], values)
    return values


def expanded_offsets(tensors: list[tuple[str, np.ndarray]]) -> dict[str, tuple[int, int]]:
    """name -> (offset, length) of each tensor in the expanded float32 file, in stored order."""
    out, offset = {}, 0
    for name, array in tensors:
        out[name] = (offset, array.size * 4)
        offset += array.size * 4
    return out


def expanded_bytes(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    """The `X.weights` file the graph's external data points into."""
    return b"".join(np.ascontiguousarray(a, "<f4").tobytes() for _, a in tensors)


def load_onnx_model(path: Path | str):
    """The ONNX ModelProto with its packed weights expanded inline, for the build and
    calibration tools that read a graph's weights or shapes (needs the `onnx` package)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    expanded = dict(load_packed(path) or ())
    for init in model.graph.initializer:
        if init.name in expanded:
            init.raw_data = np.ascontiguousarray(expanded[init.name], "<f4").tobytes()
            del init.external_data[:]
            init.data_location = onnx.TensorProto.DEFAULT
    return model

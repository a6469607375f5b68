"""Read and write the `.safetensors` format with torch alone (no `safetensors` package needed).

The format (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of
JSON `{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the raw little-endian tensor bytes; offsets are relative to the end of the header.
"""
from __future__ import annotations

import json
import os
import pathlib
import struct

import torch
from torch import Tensor

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def load_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    path = pathlib.Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt safetensors header ({e})") from e
    body = memoryview(data)[8 + n:]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor {name}: offsets {begin}..{end} outside the data ({len(body)} bytes)")
        dtype = _DTYPES[info["dtype"]]
        shape = list(info["shape"])
        if end == begin:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype)
        if t.numel() != (torch.Size(shape).numel()):
            raise ValueError(f"{path}: tensor {name}: {t.numel()} values for shape {shape}")
        out[name] = t.reshape(shape)
    return out


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> pathlib.Path:
    path = pathlib.Path(path)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"save_safetensors: tensor {name} has unsupported dtype {t.dtype}")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # keep the data 8-byte aligned, as the reference writer does
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)
    return path

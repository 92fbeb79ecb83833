"""The protobuf wire format (binary ``.caffemodel`` files), decoded against the schemas."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from dgn.caffe.net import _MAX_DEPTH
from dgn.caffe.schema import _Field, _Msg
from dgn.errors import DGNError

_U64 = (1 << 64) - 1


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, new position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DGNError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise DGNError(f"varint longer than 10 bytes at byte {pos - 10}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _scalar_from_varint(f: _Field, v: int) -> Any:
    if f.kind == "bool":
        return v != 0
    if f.kind == "uint":
        return v
    v = _signed(v)
    if f.kind == "enum":
        return f.sub.get(v, v)
    return v


def _unpacked_run(
    buf: bytes, start: int, end: int, tag: int, width: int, dtype: str
) -> tuple[np.ndarray, int]:
    """Read consecutive unpacked fixed-width records (1-byte ``tag`` + value) starting at ``start``.

    Scans in doubling windows so a file that interleaves other fields costs linear time.
    """
    stride = 1 + width
    total = (end - start) // stride
    count = 0
    window = 64
    while count < total:
        n = min(window, total - count)
        rows = np.frombuffer(buf, dtype=np.uint8, count=n * stride, offset=start + count * stride)
        bad = np.flatnonzero(rows[::stride] != tag)
        if bad.size:
            count += int(bad[0])
            break
        count += n
        window *= 2
    raw = np.frombuffer(buf, dtype=np.uint8, count=count * stride, offset=start).reshape(count, stride)
    values = np.ascontiguousarray(raw[:, 1:]).view(dtype).reshape(count)
    return values, start + count * stride


def _decode(buf: bytes, pos: int, end: int, msg: _Msg, depth: int = 0) -> dict:
    """Decode the message ``msg`` occupying ``buf[pos:end]`` into a dict keyed by field name.

    Unknown fields are skipped without being parsed; repeated fields are lists; ``floats`` and
    ``doubles`` fields are lists of numpy chunks (concatenated by the caller).
    """
    if depth > _MAX_DEPTH:
        raise DGNError(f"messages nested deeper than {_MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise DGNError(f"invalid field number {num} at byte {start} in {msg.name}")
        f = msg.by_num.get(num)
        if wt == 0:
            v, pos = _varint(buf, pos, end)
            if f is None:
                continue
            if f.kind not in ("int", "uint", "bool", "enum"):
                raise DGNError(f"{msg.name}.{f.name}: wire type 0 where {f.kind} expected (byte {start})")
            _put(out, f, _scalar_from_varint(f, v))
        elif wt in (1, 5):
            width = 8 if wt == 1 else 4
            if end - pos < width:
                raise DGNError(f"truncated {8 * width}-bit value at byte {pos} in {msg.name}")
            if f is None:
                pos += width
                continue
            want = "double" if wt == 1 else "float"
            if f.kind == want + "s":
                if pos - start == 1:
                    arr, pos = _unpacked_run(buf, start, end, buf[start], width, "<f8" if wt == 1 else "<f4")
                else:
                    arr = np.frombuffer(buf, dtype="<f8" if wt == 1 else "<f4", count=1, offset=pos)
                    pos += width
                out.setdefault(f.name, []).append(arr)
                continue
            if f.kind != want:
                raise DGNError(f"{msg.name}.{f.name}: {8 * width}-bit value where {f.kind} expected")
            _put(out, f, struct.unpack_from("<d" if wt == 1 else "<f", buf, pos)[0])
            pos += width
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise DGNError(
                    f"length {n} at byte {pos} in {msg.name} runs past the end of its message "
                    f"({end - pos} bytes left): truncated or corrupt file"
                )
            sub_end = pos + n
            if f is not None:
                _put_len(out, f, buf, pos, sub_end, depth, msg)
            pos = sub_end
        else:
            raise DGNError(f"unsupported wire type {wt} at byte {start} in {msg.name} (corrupt file?)")
    return out


def _put(out: dict, f: _Field, value: Any) -> None:
    if f.repeated:
        out.setdefault(f.name, []).append(value)
    else:
        out[f.name] = value


def _put_len(out: dict, f: _Field, buf: bytes, pos: int, end: int, depth: int, msg: _Msg) -> None:
    n = end - pos
    if f.kind == "string":
        _put(out, f, bytes(buf[pos:end]).decode("utf-8", errors="replace"))
    elif f.kind == "msg":
        _put(out, f, _decode(buf, pos, end, f.sub, depth + 1))
    elif f.kind in ("floats", "doubles", "float", "double"):
        width = 8 if f.kind.startswith("double") else 4
        if n % width:
            raise DGNError(f"{msg.name}.{f.name}: packed length {n} is not a multiple of {width}")
        if not f.repeated:
            raise DGNError(f"{msg.name}.{f.name}: packed data for a non-repeated field")
        arr = np.frombuffer(buf, dtype="<f8" if width == 8 else "<f4", count=n // width, offset=pos)
        if f.kind in ("floats", "doubles"):
            out.setdefault(f.name, []).append(arr)
        else:
            out.setdefault(f.name, []).extend(float(x) for x in arr)
    elif f.repeated:  # packed varints
        vals = out.setdefault(f.name, [])
        while pos < end:
            v, pos = _varint(buf, pos, end)
            vals.append(_scalar_from_varint(f, v))
    else:
        raise DGNError(f"{msg.name}.{f.name}: length-delimited data where {f.kind} expected")



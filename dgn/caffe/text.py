"""The protobuf text format (``.prototxt`` files), parsed into nested dicts."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from dgn.caffe.net import _MAX_DEPTH
from dgn.caffe.schema import _Field, _Msg
from dgn.errors import DGNError

_TOKEN = re.compile(
    r"""(?P<ws>\s+|\#[^\n]*)
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![A-Za-z_0-9]))
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<p>[{}<>:\[\],;.\-/])""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {
    "n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
    "\\": b"\\", "'": b"'", '"': b'"', "?": b"?",
}  # fmt: skip
# Fields Caffe declares repeated that text parsing always returns as lists, even when they occur once.
_ALWAYS_LIST = frozenset(
    {"layer", "layers", "bottom", "top", "input", "input_dim", "input_shape", "include", "exclude",
     "param", "dim", "blobs", "blobs_lr", "weight_decay", "loss_weight", "propagate_down"}
)  # fmt: skip


def _unescape(body: str, where: str) -> str:
    out = bytearray()
    last = 0
    for m in _ESCAPE.finditer(body):
        out += body[last : m.start()].encode("utf-8")
        esc = m.group(1)
        if esc[0] == "x":
            out.append(int(esc[1:], 16))
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        elif esc[0] in "uU" and len(esc) > 1:
            try:
                out += chr(int(esc[1:], 16)).encode("utf-8", errors="replace")
            except (ValueError, OverflowError):
                raise DGNError(f"{where}: bad unicode escape \\{esc}") from None
        elif esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc]
        else:
            raise DGNError(f"{where}: unknown escape \\{esc} in a string")
        last = m.end()
    out += body[last:].encode("utf-8")
    return out.decode("utf-8", errors="replace")


class _TextParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        n = len(text)
        while pos < n:
            m = _TOKEN.match(text, pos)
            if m is None:
                raise DGNError(f"{self._where(pos)}: unexpected character {text[pos]!r}")
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def _where(self, pos: int) -> str:
        return f"prototxt line {self.text.count(chr(10), 0, pos) + 1}"

    def _here(self) -> str:
        if self.i < len(self.tokens):
            return self._where(self.tokens[self.i][2])
        return "prototxt end of text"

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise DGNError("prototxt: unexpected end of text (missing '}'?)")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def message(self, depth: int, closing: str | None) -> dict:
        if depth > _MAX_DEPTH:
            raise DGNError(f"{self._here()}: messages nested deeper than {_MAX_DEPTH} levels")
        fields: dict[str, list] = {}
        from_list: set[str] = set()
        while True:
            tok = self._peek()
            if tok is None:
                if closing is not None:
                    raise DGNError(f"prototxt: unexpected end of text, missing {closing!r}")
                break
            if tok == closing:
                self.i += 1
                break
            name = self._field_name()
            colon = self._peek() == ":"
            if colon:
                self.i += 1
            nxt = self._peek()
            values = fields.setdefault(name, [])
            if nxt in ("{", "<"):
                self.i += 1
                values.append(self.message(depth + 1, "}" if nxt == "{" else ">"))
            elif nxt == "[" and colon:
                self.i += 1
                from_list.add(name)
                if self._peek() == "]":
                    self.i += 1
                else:
                    while True:
                        if self._peek() in ("{", "<"):
                            op = self._next()[1]
                            values.append(self.message(depth + 1, "}" if op == "{" else ">"))
                        else:
                            values.append(self._scalar())
                        where = self._here()
                        sep = self._next()[1]
                        if sep == "]":
                            break
                        if sep != ",":
                            raise DGNError(f"{where}: expected ',' or ']' in a list, found {sep!r}")
            elif colon:
                values.append(self._scalar())
            else:
                raise DGNError(f"{self._here()}: expected ':' or '{{' after field {name!r}")
            if self._peek() in (",", ";"):
                self.i += 1
        return {
            k: v if (k in _ALWAYS_LIST or k in from_list or len(v) != 1) else v[0] for k, v in fields.items()
        }

    def _field_name(self) -> str:
        where = self._here()
        kind, text, _ = self._next()
        if kind == "id":
            return text
        if text == "[":  # extension or Any type URL: keep the bracketed name verbatim
            parts = []
            while True:
                t = self._next()[1]
                if t == "]":
                    return "[" + "".join(parts) + "]"
                parts.append(t)
        raise DGNError(f"{where}: expected a field name, found {text!r}")

    def _scalar(self) -> Any:
        where = self._here()
        kind, text, _ = self._next()
        if kind == "str":
            parts = [_unescape(text[1:-1], where)]
            while self.i < len(self.tokens) and self.tokens[self.i][0] == "str":
                parts.append(_unescape(self.tokens[self.i][1][1:-1], where))
                self.i += 1
            return "".join(parts)
        if kind == "num":
            return _number(text, where)
        sign = 1.0
        if text == "-" and self.i < len(self.tokens) and self.tokens[self.i][0] == "id":
            sign = -1.0
            kind, text, _ = self._next()
        if kind == "id":
            low = text.lower()
            if low in ("inf", "infinity"):
                return sign * math.inf
            if low == "nan":
                return math.nan
            if sign < 0:
                raise DGNError(f"{where}: '-' before {text!r}")
            if text in ("true", "True"):
                return True
            if text in ("false", "False"):
                return False
            return text  # an enum value name
        raise DGNError(f"{where}: expected a value, found {text!r}")


def _number(text: str, where: str) -> int | float:
    body = text.lstrip("+-")
    neg = text.startswith("-")
    if body[:2] in ("0x", "0X"):
        v: int | float = int(body, 16)
    elif re.fullmatch(r"\d+", body):
        v = int(body)
    else:
        try:
            v = float(body.rstrip("fF"))
        except ValueError:
            raise DGNError(f"{where}: bad number {text!r}") from None
    return -v if neg else v


def parse_prototxt_text(text: str) -> dict:
    """Parse protobuf text format into nested dicts.

    Every message becomes a dict keyed by field name. A field that occurs more than once, or is
    written with list syntax (``dim: [1, 3]``), becomes a list; so do Caffe's common repeated
    fields (``layer``, ``layers``, ``bottom``, ``top``, ``input``, ``input_dim``, ``include``,
    ``dim``, ...) even when they occur once. Enum values stay strings (``"MAX"``), ``true`` /
    ``false`` become bools. Comments (``#``) and quoted strings with C escapes are handled.

    Args:
        text: the text of a ``.prototxt`` file.

    Returns:
        The top-level message as a dict.

    Raises:
        DGNError: malformed text (the message names the line), or nesting deeper than 64 levels.
    """
    parser = _TextParser(text)
    return parser.message(0, None)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _coerce(value: Any, f: _Field, where: str) -> Any:
    """Give one text-format value the type its schema field declares."""
    kind = f.kind
    if kind == "msg":
        if not isinstance(value, dict):
            raise DGNError(f"{where}: field {f.name!r} must be a message {{...}}, got {value!r}")
        return _normalise(value, f.sub, where)
    if kind == "enum":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DGNError(
                f"{where}: field {f.name!r} expects one of {sorted(f.sub.values())}, got {value!r}"
            )
        return f.sub.get(value, value) if isinstance(value, int) else value
    if kind in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DGNError(f"{where}: field {f.name!r} expects an integer, got {value!r}")
        if kind == "uint" and value < 0:
            raise DGNError(f"{where}: field {f.name!r} must not be negative, got {value}")
        return value
    if kind in ("float", "double", "floats", "doubles"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DGNError(f"{where}: field {f.name!r} expects a number, got {value!r}")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1, "t", "f"):
            return value in (1, "t")
        raise DGNError(f"{where}: field {f.name!r} expects true or false, got {value!r}")
    if not isinstance(value, str):
        raise DGNError(f"{where}: field {f.name!r} expects a quoted string, got {value!r}")
    return value


def _normalise(d: dict, msg: _Msg, where: str) -> dict:
    """Make a parsed text message look like the binary decoder's output for the same message."""
    out: dict[str, Any] = {}
    for key, val in d.items():
        f = msg.by_name.get(key)
        if f is None:
            out[key] = val
            continue
        vals = [_coerce(v, f, where) for v in _as_list(val)]
        if f.kind in ("floats", "doubles"):
            out[key] = [np.asarray(vals, dtype=np.float64 if f.kind == "doubles" else np.float32)]
        elif f.repeated:
            out[key] = vals
        elif vals:
            out[key] = vals[-1]
    return out



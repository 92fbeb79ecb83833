"""PyTorch modules with Caffe's semantics (pooling, LRN, reshape, ...) and the assembled :class:`CaffeModule`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgn.errors import DGNError

_NEG_FLT_MAX = float(np.finfo(np.float32).min)


def _pool_out_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """Caffe's pooled size: ceil (or floor) rounding, then drop a last window that starts in the padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class CaffePool2d(nn.Module):
    """Caffe's MAX / AVE pooling, exactly.

    Output size is Caffe's (ceil rounding by default, last window never starting in the right
    padding). Unlike PyTorch's ``ceil_mode``, Caffe keeps a last window that starts beyond an
    unpadded input (possible when stride > kernel); it yields -FLT_MAX (MAX, as in Caffe) or 0 (AVE,
    where Caffe divides by a window size <= 0 and gets NaN or -0). MAX ignores padding. AVE divides each window's sum by the window size clipped
    to the padded input ``[-pad, H + pad)``, so windows that overhang the padded input count
    fewer elements while the padding itself is counted, as Caffe's ``PoolingLayer`` does.
    """

    def __init__(
        self,
        mode: str,
        kernel: tuple[int, int] = (1, 1),
        stride: tuple[int, int] = (1, 1),
        pad: tuple[int, int] = (0, 0),
        ceil_mode: bool = True,
        global_pooling: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("MAX", "AVE"):
            raise DGNError(f"pooling mode {mode!r} is not supported; use MAX or AVE")
        self.mode = mode
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.pad = tuple(pad)
        self.ceil_mode = ceil_mode
        self.global_pooling = global_pooling

    def extra_repr(self) -> str:
        if self.global_pooling:
            return f"{self.mode}, global"
        return (
            f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}, "
            f"round={'CEIL' if self.ceil_mode else 'FLOOR'}"
        )

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Pooled (height, width) for an input of ``h`` x ``w``."""
        if self.global_pooling:
            return 1, 1
        return (
            _pool_out_size(h, self.kernel[0], self.stride[0], self.pad[0], self.ceil_mode),
            _pool_out_size(w, self.kernel[1], self.stride[1], self.pad[1], self.ceil_mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pooling:
            return (
                x.amax(dim=(-2, -1), keepdim=True)
                if self.mode == "MAX"
                else x.mean(dim=(-2, -1), keepdim=True)
            )
        h, w = x.shape[-2], x.shape[-1]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        oh, ow = self.output_size(h, w)
        if oh <= 0 or ow <= 0:
            raise DGNError(f"pooling {self.kernel} with pad {self.pad} leaves no output for a {h}x{w} input")
        # pad right/bottom just enough for the last window, then pool without implicit padding
        rh = max(0, (oh - 1) * sh + kh - ph - h)
        rw = max(0, (ow - 1) * sw + kw - pw - w)
        if self.mode == "MAX":
            # -FLT_MAX, Caffe's initial max: what a window lying wholly outside the input yields
            xp = F.pad(x, (pw, rw, ph, rh), value=_NEG_FLT_MAX) if (pw or rw or ph or rh) else x
            return F.max_pool2d(xp, (kh, kw), (sh, sw))[..., :oh, :ow]
        xp = F.pad(x, (pw, rw, ph, rh)) if (pw or rw or ph or rh) else x
        sums = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[..., :oh, :ow]
        starts_h = torch.arange(oh, device=x.device) * sh - ph
        starts_w = torch.arange(ow, device=x.device) * sw - pw
        size_h = torch.clamp(starts_h + kh, max=h + ph) - starts_h
        size_w = torch.clamp(starts_w + kw, max=w + pw) - starts_w
        divisor = (size_h[:, None] * size_w[None, :]).clamp(min=1).to(sums.dtype)
        return sums / divisor


class _LRNWithinChannel(nn.Module):
    """Caffe LRN with ``norm_region: WITHIN_CHANNEL``: x / (1 + alpha/n^2 * sum_{n x n} x^2)^beta.

    Caffe builds it from AVE pooling (kernel n, pad (n-1)/2, zero padding counted) of x^2,
    then a Power layer (shift 1, scale alpha, power -beta); ``k`` is not used.
    """

    def __init__(self, size: int, alpha: float, beta: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(
            x * x, self.size, stride=1, padding=(self.size - 1) // 2, count_include_pad=True
        )
        return x * (1.0 + self.alpha * mean_sq).pow(-self.beta)


class _InnerProduct(nn.Linear):
    """Caffe InnerProduct: flatten from ``axis`` on, then a linear map."""

    def __init__(self, in_features: int, out_features: int, bias: bool, axis: int) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.axis = axis

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={self.axis}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(self.axis), self.weight, self.bias)


class _Reshape(nn.Module):
    """Caffe Reshape: ``0`` copies an input dimension, ``-1`` is inferred; axis/num_axes pick the span."""

    def __init__(self, dims: list[int], axis: int, num_axes: int) -> None:
        super().__init__()
        self.dims, self.axis, self.num_axes = list(dims), axis, num_axes

    def extra_repr(self) -> str:
        return f"dims={self.dims}, axis={self.axis}, num_axes={self.num_axes}"

    def target_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``shape``."""
        n = len(shape)
        start = self.axis if self.axis >= 0 else self.axis + n + 1
        end = n if self.num_axes == -1 else start + self.num_axes
        if not (0 <= start <= n and start <= end <= n):
            raise DGNError(f"reshape axis={self.axis} num_axes={self.num_axes} does not fit a {n}-D input")
        new: list[int] = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if start + i >= n:
                    raise DGNError(f"reshape dim 0 at position {i} copies an axis the input lacks")
                new.append(shape[start + i])
            else:
                new.append(d)
        out = list(shape[:start]) + new + list(shape[end:])
        if out.count(-1) > 1:
            raise DGNError(f"reshape {self.dims}: at most one -1")
        total = math.prod(shape)
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            if known == 0 or total % known:
                raise DGNError(f"reshape {self.dims} cannot take {tuple(shape)}")
            out[out.index(-1)] = total // known
        if math.prod(out) != total:
            raise DGNError(f"reshape {self.dims} cannot take {tuple(shape)} ({total} values)")
        return tuple(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.target_shape(tuple(x.shape)))


class _Concat(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


class _Split(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x,) * self.n


class _Eltwise(nn.Module):
    def __init__(self, op: str, coeffs: list[float]) -> None:
        super().__init__()
        self.op, self.coeffs = op, list(coeffs)

    def extra_repr(self) -> str:
        return f"{self.op}" + (f", coeffs={self.coeffs}" if self.coeffs else "")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.op == "SUM":
            coeffs = self.coeffs or [1.0] * len(xs)
            out = xs[0] * coeffs[0] if coeffs[0] != 1.0 else xs[0]
            for x, c in zip(xs[1:], coeffs[1:]):
                out = out + (x * c if c != 1.0 else x)
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.op == "PROD" else torch.maximum(out, x)
        return out


class _Power(nn.Module):
    """Caffe Power: (shift + scale * x) ** power."""

    def __init__(self, power: float, scale: float, shift: float) -> None:
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def extra_repr(self) -> str:
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale + self.shift if (self.scale != 1.0 or self.shift != 0.0) else x
        return y.pow(self.power) if self.power != 1.0 else y


class _Dropout(nn.Module):
    """Caffe Dropout with ``scale_train: false``: plain masking in training, scaled by (1 - p) at test."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.dropout(x, self.p, True) * (1.0 - self.p)
        return x * (1.0 - self.p)


@dataclass
class LoadReport:
    """What :func:`load_into` did: loaded keys, Caffe blobs with no module parameter, and
    module parameters that no Caffe blob filled."""

    loaded: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class CaffeModule(nn.Module):
    """A Caffe net as a PyTorch module.

    Submodules are registered under the Caffe layer names, with characters PyTorch dislikes
    replaced by ``_``; ``caffe_names`` maps Caffe layer name -> submodule name. ``forward``
    runs the layers in file order, passing tensors by blob name (in-place layers rebind the
    blob), and returns the last layer's last top, or every blob with ``return_all=True``.
    """

    def __init__(
        self,
        name: str,
        input_shapes: dict[str, tuple[int, ...]],
        steps: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
        modules: dict[str, nn.Module],
        caffe_names: dict[str, str],
        blob_shapes: dict[str, tuple[int, ...]],
    ) -> None:
        super().__init__()
        self.net_name = name
        self.input_shapes = dict(input_shapes)
        self.input_names = list(input_shapes)
        self.caffe_names = dict(caffe_names)
        self.blob_shapes = dict(blob_shapes)
        self.load_report: LoadReport | None = None
        for key, mod in modules.items():
            self.add_module(key, mod)
        self._steps = list(steps)
        if self._steps:
            self.output_name = self._steps[-1][2][-1]
        elif self.input_names:
            self.output_name = self.input_names[-1]
        else:
            raise DGNError(f"net {name!r} has no inputs and no layers to run")

    def forward(
        self, *inputs: torch.Tensor, return_all: bool = False, **named: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the net.

        Args:
            *inputs: input tensors in the order of ``input_names``.
            return_all: return every blob (name -> tensor) instead of the output blob.
            **named: input tensors by blob name.

        Returns:
            The output blob (``output_name``), or the dict of all blobs.
        """
        if len(inputs) > len(self.input_names):
            raise DGNError(f"net {self.net_name!r} takes {len(self.input_names)} inputs, got {len(inputs)}")
        blobs: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        blobs.update(named)
        missing = [n for n in self.input_names if n not in blobs]
        if missing:
            raise DGNError(f"net {self.net_name!r} needs inputs {self.input_names}; missing {missing}")
        for key, bottoms, tops in self._steps:
            out = self._modules[key](*[blobs[b] for b in bottoms])
            if isinstance(out, torch.Tensor):
                out = (out,)
            for t, v in zip(tops, out):
                blobs[t] = v
        return blobs if return_all else blobs[self.output_name]


def sanitize_name(name: str) -> str:
    """A Caffe layer name made safe as a PyTorch submodule name ('.', '/', '-', ... become '_')."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"



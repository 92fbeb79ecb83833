"""PyTorch modules for the Caffe layers that model-zoo nets use beyond the classic ones (ResNet's
BatchNorm and Scale, PReLU, FCN's Crop, Slice, Reduction, ArgMax, ...), each following the forward
equation of the BVLC layer of the same name."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from dgn.errors import DGNError


def _along(t: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    """``t`` shaped to broadcast against an ``ndim``-D blob with its first axis at ``axis``."""
    return t.reshape(tuple(t.shape) + (1,) * (ndim - axis - t.dim()))


class CaffeBatchNorm(nn.Module):
    """Caffe BatchNorm: ``(x - mean) / sqrt(var + eps)`` per channel (axis 1), with no affine part.

    The buffers are Caffe's three blobs as stored: ``moving_mean`` and ``moving_var`` are sums that
    ``scale_factor`` (the moving-average normaliser) divides, so mean = moving_mean / s and
    var = moving_var / s, where s == 0 gives 0 (Caffe's rule). With global statistics (the
    default in eval mode, as Caffe's TEST phase; ``use_global_stats`` from the prototxt overrides)
    these are used; otherwise the batch's own mean and biased variance are, and in training mode the
    blobs are updated as Caffe does (s <- f s + 1, sums <- stat + f sums, the variance with m/(m-1)).
    Without Caffe weights the buffers hold mean 0, variance 1 and s = 1.
    """

    caffe_buffers = ("moving_mean", "moving_var", "scale_factor")

    def __init__(
        self, channels: int, eps: float = 1e-5, use_global_stats: bool | None = None, fraction: float = 0.999
    ) -> None:
        super().__init__()
        self.channels, self.eps, self.use_global_stats, self.fraction = channels, eps, use_global_stats, fraction
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_var", torch.ones(channels))
        self.register_buffer("scale_factor", torch.ones(1))

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, use_global_stats={self.use_global_stats}"

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored (mean, variance), each of shape (channels,)."""
        s = self.scale_factor.reshape(-1)[:1]  # a tensor, so a forward pass on a GPU never waits for it
        f = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
        return self.moving_mean * f, self.moving_var * f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xv = x.reshape(x.shape[0], self.channels, -1)
        use_global = self.use_global_stats if self.use_global_stats is not None else not self.training
        if use_global:
            mean, var = self.statistics()
        else:
            mean = xv.mean(dim=(0, 2))
            var = (xv - mean[:, None]).square().mean(dim=(0, 2))
            if self.training:
                self._update(mean.detach(), var.detach(), xv.shape[0] * xv.shape[2])
        y = (xv - mean[:, None]) / (var[:, None] + self.eps).sqrt()
        return y.reshape(x.shape)

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
        f = self.fraction
        self.scale_factor.mul_(f).add_(1.0)
        self.moving_mean.mul_(f).add_(mean)
        self.moving_var.mul_(f).add_(var * (m / (m - 1) if m > 1 else 1.0))


class CaffeScale(nn.Module):
    """Caffe Scale: ``x * scale (+ bias)``, the scale's axes lined up with x's from ``axis`` on.

    The scale is the ``weight`` parameter (shape ``scale_shape``), or, when ``scale_shape`` is None,
    the second input (Caffe's two-bottom form). ``bias_shape`` adds a ``bias`` parameter.
    A 0-D scale or bias applies to every element, as in Caffe.
    """

    def __init__(
        self, axis: int, scale_shape: tuple[int, ...] | None, bias_shape: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.ones(scale_shape)) if scale_shape is not None else None
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias_shape is not None else None

    def extra_repr(self) -> str:
        scale = "input 2" if self.weight is None else tuple(self.weight.shape)
        return f"axis={self.axis}, scale={scale}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        s = self.weight if scale is None else scale
        if s is None:
            raise DGNError("this Scale layer takes its scale as a second input")
        y = x * _along(s, self.axis if s.dim() else 0, x.dim())
        if self.bias is not None:
            y = y + _along(self.bias, self.axis if self.bias.dim() else 0, x.dim())
        return y


class CaffeBias(nn.Module):
    """Caffe Bias: ``x + bias``, the bias's axes lined up with x's from ``axis`` on; the bias is the
    ``bias`` parameter, or the second input when ``shape`` is None."""

    def __init__(self, axis: int, shape: tuple[int, ...] | None) -> None:
        super().__init__()
        self.axis = axis
        self.bias = nn.Parameter(torch.zeros(shape)) if shape is not None else None

    def extra_repr(self) -> str:
        return f"axis={self.axis}, bias={'input 2' if self.bias is None else tuple(self.bias.shape)}"

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.bias if bias is None else bias
        if b is None:
            raise DGNError("this Bias layer takes its bias as a second input")
        return x + _along(b, self.axis if b.dim() else 0, x.dim())


class _AbsVal(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class _BNLL(nn.Module):
    """Caffe BNLL: log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) so it never overflows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


class _Exp(nn.Module):
    """Caffe Exp: base ** (shift + scale * x); base -1 means e."""

    def __init__(self, base: float, scale: float, shift: float) -> None:
        super().__init__()
        self.base, self.scale, self.shift = base, scale, shift
        log_base = 1.0 if base == -1 else math.log(base)
        self.inner, self.outer = log_base * scale, math.exp(log_base * shift)

    def extra_repr(self) -> str:
        return f"base={self.base}, scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.exp(x * self.inner if self.inner != 1.0 else x)
        return y * self.outer if self.outer != 1.0 else y


class _Log(nn.Module):
    """Caffe Log: log_base(shift + scale * x); base -1 means e."""

    def __init__(self, base: float, scale: float, shift: float) -> None:
        super().__init__()
        self.base, self.scale, self.shift = base, scale, shift
        self.base_scale = 1.0 if base == -1 else 1.0 / math.log(base)

    def extra_repr(self) -> str:
        return f"base={self.base}, scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.log(x * self.scale + self.shift if (self.scale != 1.0 or self.shift != 0.0) else x)
        return y * self.base_scale if self.base_scale != 1.0 else y


class _Threshold(nn.Module):
    """Caffe Threshold: 1 where x > threshold, else 0."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)


class _Crop(nn.Module):
    """Caffe Crop: the first input cut to the second's size on every axis from ``axis`` on, starting
    at ``offsets`` (one per cropped axis)."""

    def __init__(self, axis: int, offsets: list[int]) -> None:
        super().__init__()
        self.axis, self.offsets = axis, list(offsets)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, offsets={self.offsets}"

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        for i, off in enumerate(self.offsets):
            a = self.axis + i
            if off + like.shape[a] > x.shape[a]:
                raise DGNError(f"crop of axis {a} to {like.shape[a]} at offset {off} runs past size {x.shape[a]}")
            x = x.narrow(a, off, like.shape[a])
        return x


class _Slice(nn.Module):
    """Caffe Slice: cut along ``axis`` at ``points``, or into ``n`` equal parts when there are none."""

    def __init__(self, axis: int, points: list[int], n: int) -> None:
        super().__init__()
        self.axis, self.points, self.n = axis, list(points), n

    def extra_repr(self) -> str:
        return f"axis={self.axis}, " + (f"points={self.points}" if self.points else f"parts={self.n}")

    def sizes(self, length: int) -> list[int]:
        """The sizes of the parts of an axis of ``length``."""
        if not self.points:
            if length % self.n:
                raise DGNError(f"slice: {self.n} tops do not divide an axis of {length} evenly")
            return [length // self.n] * self.n
        edges = [0, *self.points, length]
        sizes = [b - a for a, b in itertools.pairwise(edges)]
        if min(sizes) <= 0:
            raise DGNError(f"slice points {self.points} must increase strictly within an axis of {length}")
        return sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, self.sizes(x.shape[self.axis]), dim=self.axis))


class _Tile(nn.Module):
    """Caffe Tile: the blob from ``axis`` on repeated ``tiles`` times along ``axis``."""

    def __init__(self, axis: int, tiles: int) -> None:
        super().__init__()
        self.axis, self.tiles = axis, tiles

    def extra_repr(self) -> str:
        return f"axis={self.axis}, tiles={self.tiles}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reps = [1] * x.dim()
        reps[self.axis] = self.tiles
        return x.repeat(reps)


class _Reduction(nn.Module):
    """Caffe Reduction: SUM, ASUM (sum of |x|), SUMSQ (sum of x^2) or MEAN over all axes from ``axis``
    on, times ``coeff``; the output has the shape of the axes before ``axis``."""

    def __init__(self, op: str, axis: int, coeff: float) -> None:
        super().__init__()
        self.op, self.axis, self.coeff = op, axis, coeff

    def extra_repr(self) -> str:
        return f"{self.op}, axis={self.axis}, coeff={self.coeff}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(tuple(x.shape[: self.axis]) + (-1,))
        if self.op == "ASUM":
            flat = flat.abs()
        elif self.op == "SUMSQ":
            flat = flat.square()
        y = flat.mean(-1) if self.op == "MEAN" else flat.sum(-1)
        return y * self.coeff if self.coeff != 1.0 else y


class _ArgMax(nn.Module):
    """Caffe ArgMax: the ``top_k`` largest values' indices (or, with ``out_max_val``, the values) along
    ``axis``; without an axis, over each example flattened, giving (N, 1, k) indices or (N, 2, k)
    indices then values (padded with 1s to the input's number of axes). Ties go to the larger index,
    as Caffe's sort of (value, index) pairs does. Indices are returned as floats, like Caffe's."""

    def __init__(self, top_k: int, out_max_val: bool, axis: int | None) -> None:
        super().__init__()
        self.top_k, self.out_max_val, self.axis = top_k, out_max_val, axis

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, out_max_val={self.out_max_val}, axis={self.axis}"

    def _top(self, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[dim]
        order = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
        values = order.values.narrow(dim, 0, self.top_k)
        index = (n - 1) - order.indices.narrow(dim, 0, self.top_k)
        return values, index.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is not None:
            values, index = self._top(x, self.axis)
            return values if self.out_max_val else index
        values, index = self._top(x.reshape(x.shape[0], -1), 1)
        out = torch.stack([index, values], 1) if self.out_max_val else index[:, None]
        return out.reshape(out.shape + (1,) * (max(x.dim(), 3) - 3))


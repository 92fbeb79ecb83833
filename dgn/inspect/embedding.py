"""2-D layouts of images by their features (PCA, exact t-SNE) and one picture of their thumbnails.

t-SNE (van der Maaten & Hinton, 2008) is implemented here in float64 torch, exactly (O(n^2) memory
and time: fine for a few thousand points): input similarities P from Gaussian kernels whose widths
are found by binary search so that each row has the requested perplexity, symmetrised; Student-t
similarities Q in 2-D; gradient descent with momentum (0.5, then 0.8), per-coordinate gains
(delta-bar-delta) and early exaggeration of P. Everything is seeded and runs on the CPU in float64,
so the same seed gives the same layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from dgn.errors import DGNError


def pca(features: np.ndarray | torch.Tensor, dims: int = 2) -> np.ndarray:
    """Project centred features (N, d) on their first ``dims`` principal axes (exact SVD, float64).

    Each axis's sign is fixed so that its largest-magnitude loading is positive, so the result does
    not depend on the SVD routine's sign choice.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if x.dim() != 2 or len(x) < 2:
        raise DGNError(f"PCA needs at least 2 feature vectors (N, d), got shape {tuple(x.shape)}")
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[: min(dims, vh.shape[0])]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    out = x @ axes.T
    if out.shape[1] < dims:  # fewer directions than asked (tiny or degenerate input)
        out = torch.cat([out, out.new_zeros(len(out), dims - out.shape[1])], 1)
    return out.numpy()


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)


def joint_probabilities(features: torch.Tensor, perplexity: float, tol: float = 1e-5, steps: int = 100) -> torch.Tensor:
    """Symmetric t-SNE input similarities P (N, N), summing to 1.

    Per row i, ``p_j|i ∝ exp(-beta_i * d_ij^2)`` with ``beta_i`` found by bisection so that the row's
    entropy is ``log(perplexity)``; then ``P = (P_cond + P_cond^T) / 2N``.
    """
    n = len(features)
    d = _squared_distances(features)
    off = ~torch.eye(n, dtype=torch.bool)
    # subtracting each row's smallest distance changes no p_j|i but keeps exp() from underflowing
    d = (d - torch.where(off, d, torch.inf).min(1, keepdim=True).values) * off
    target = math.log(perplexity)
    beta = torch.ones(n, 1, dtype=torch.float64)
    lo = torch.full_like(beta, -math.inf)
    hi = torch.full_like(beta, math.inf)
    for _ in range(steps):
        w = torch.exp(-d * beta) * off
        total = w.sum(1, keepdim=True).clamp_min(1e-300)
        entropy = torch.log(total) + beta * (d * w).sum(1, keepdim=True) / total
        diff = entropy - target
        if bool((diff.abs() < tol).all()):
            break
        too_flat = diff > 0  # entropy too high: narrow the kernel (larger beta)
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(
            too_flat,
            torch.where(torch.isinf(hi), beta * 2, (beta + hi) / 2),
            torch.where(torch.isinf(lo), beta / 2, (beta + lo) / 2),
        )
    w = torch.exp(-d * beta) * off
    p = w / w.sum(1, keepdim=True).clamp_min(1e-300)
    p = (p + p.T) / (2 * n)
    return p.clamp_min(1e-12) * off


def tsne(
    features: np.ndarray | torch.Tensor,
    perplexity: float = 30.0,
    iterations: int = 1000,
    seed: int = 0,
    early_exaggeration: float = 12.0,
    exaggeration_iterations: int = 250,
    learning_rate: float | None = None,
    pca_dims: int | None = 50,
) -> np.ndarray:
    """Exact t-SNE of features (N, d) to 2-D.

    Args:
        perplexity: effective number of neighbours; must be below N - 1.
        iterations: gradient steps in all (the first ``exaggeration_iterations`` with P multiplied by
            ``early_exaggeration`` and momentum 0.5; momentum 0.8 after).
        seed: seed of the initial layout (N(0, 1e-4^2) per coordinate).
        learning_rate: default ``max(N / early_exaggeration / 4, 50)``.
        pca_dims: first reduce the features to this many principal components (None: keep all).

    Returns:
        (N, 2) float64 positions, centred.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if x.ndim != 2 or n < 3:
        raise DGNError(f"t-SNE needs at least 3 feature vectors (N, d), got shape {x.shape}")
    if not 1 <= perplexity < n - 1:
        raise DGNError(f"perplexity {perplexity} must be at least 1 and below N - 1 = {n - 1}; lower --perplexity")
    if iterations < 1:
        raise DGNError(f"iterations must be at least 1, got {iterations}")
    if pca_dims is not None and x.shape[1] > pca_dims:
        x = pca(x, pca_dims)
    with torch.random.fork_rng(devices=[]):
        p = joint_probabilities(torch.from_numpy(np.ascontiguousarray(x)), perplexity)
        y = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1e-4
    lr = learning_rate if learning_rate is not None else max(n / early_exaggeration / 4, 50.0)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    p_exaggerated = early_exaggeration * p
    for it in range(iterations):
        exaggerate = it < exaggeration_iterations
        num = _squared_distances(y).add_(1).reciprocal_()
        num.fill_diagonal_(0)
        pq = (num / num.sum()).clamp_min_(1e-12).neg_().add_(p_exaggerated if exaggerate else p).mul_(num)
        grad = 4 * (pq.sum(1, keepdim=True) * y - pq @ y)
        same_sign = (grad > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
        update = (0.5 if exaggerate else 0.8) * update - lr * gains * grad
        y = y + update
        y = y - y.mean(0)
    return y.numpy()


def embed(features: np.ndarray, method: str = "tsne", seed: int = 0, **tsne_options) -> np.ndarray:
    """2-D positions (N, 2) of features by ``method`` ("tsne" or "pca")."""
    if method == "pca":
        return pca(features, 2)
    if method == "tsne":
        return tsne(features, seed=seed, **tsne_options)
    raise DGNError(f"unknown embedding method {method!r}; valid: tsne, pca")


def _normalised(positions: np.ndarray) -> np.ndarray:
    """Positions scaled into [0, 1] x [0, 1], keeping the aspect ratio, centred."""
    pos = np.asarray(positions, dtype=np.float64)
    pos = pos - pos.min(0)
    span = pos.max()
    pos = pos / span if span > 0 else np.full_like(pos, 0.5)
    return pos + (1 - pos.max(0)) / 2


def snap_to_grid(positions: np.ndarray, cells: int) -> np.ndarray:
    """Move each point (in order) to the free cell of a ``cells`` x ``cells`` grid nearest its position.

    Returns:
        (N, 2) integer cell coordinates (column, row), all distinct.
    """
    n = len(positions)
    if n > cells * cells:
        raise DGNError(f"{n} images do not fit a {cells}x{cells} grid; use a larger --size or a smaller --thumb")
    ideal = _normalised(positions) * (cells - 1)
    grid = np.stack(np.meshgrid(np.arange(cells), np.arange(cells), indexing="xy"), -1).reshape(-1, 2)
    free = np.ones(len(grid), dtype=bool)
    out = np.zeros((n, 2), dtype=np.int64)
    for i in range(n):
        dist = ((grid - ideal[i]) ** 2).sum(1)
        dist[~free] = np.inf
        cell = int(np.argmin(dist))
        free[cell] = False
        out[i] = grid[cell]
    return out


def thumbnail_picture(
    images: Sequence[np.ndarray],
    positions: np.ndarray,
    size: int = 2000,
    thumb: int = 48,
    grid: bool = False,
) -> np.ndarray:
    """One ``size`` x ``size`` picture with each image's thumbnail pasted at its 2-D position.

    Later images are pasted over earlier ones. With ``grid`` every thumbnail gets its own cell of a
    regular grid (the free cell nearest its position), so none is hidden.

    Returns:
        An HxWx3 uint8 array.
    """
    if len(images) != len(positions):
        raise DGNError(f"{len(images)} images but {len(positions)} positions")
    if thumb < 1 or size < thumb:
        raise DGNError(f"need 1 <= thumb <= size, got thumb {thumb}, size {size}")
    canvas = Image.new("RGB", (size, size), "white")
    if grid:
        cells = size // thumb
        corners = snap_to_grid(positions, cells) * thumb + (size - cells * thumb) // 2
    else:
        corners = np.round(_normalised(positions) * (size - thumb)).astype(np.int64)
    for array, (x, y) in zip(images, corners):
        tile = Image.fromarray(array).convert("RGB").resize((thumb, thumb), Image.Resampling.LANCZOS)
        canvas.paste(tile, (int(x), int(size - thumb - y)))  # y grows upwards, as in a plot
    return np.asarray(canvas)


def neighbour_purity(positions: np.ndarray, labels: Sequence[int]) -> float:
    """Share of points whose nearest other point (in ``positions``) has the same label."""
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    d = _squared_distances(pos)
    d.fill_diagonal_(math.inf)
    nearest = d.argmin(1).numpy()
    lab = np.asarray(labels)
    return float((lab[nearest] == lab).mean())

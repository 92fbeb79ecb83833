"""The offline video world: procedural moving-shapes clips whose classes differ only by motion.

A clip shows one shape (a bar, a triangle or a half-disc) in a random colour over a static random
background (a smooth colour gradient); the class decides only how the shape moves over the 16 frames:

    0 left, 1 right, 2 up, 3 down (2.0-2.5 px per frame), 4 clockwise, 5 anticlockwise (12-16 degrees per
    frame), 6 grow, 7 shrink (x 1.08-1.11 or its inverse per frame).

The renderer takes the shape's state at the first frame (:class:`Appearance`) and the class, so one first
frame can start a clip of any class. The sampler draws the state at the *middle* of the clip (t = 7.5)
independently of the class: position uniform on the frame, which is a torus (a shape leaving one edge
re-enters at the other), angle uniform, size log-uniform. So the *set* of frames of a clip carries no
class information: a reversed "left" clip is distributed exactly as a "right" clip (up/down,
clockwise/anticlockwise and grow/shrink alike), and only the frame order tells the classes apart.

Frames are 32x32 RGB, rendered with 4x4 supersampling (sub-pixel motion stays visible) plus a little
per-frame pixel noise. Everything is a function of the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from dgn.errors import DGNError

SHAPE_CLASSES = ("left", "right", "up", "down", "clockwise", "anticlockwise", "grow", "shrink")
SHAPES = ("bar", "triangle", "half-disc")
FRAME_SIZE = 32
CLIP_FRAMES = 16
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Appearance:
    """What a clip looks like at its first frame (independent of its class)."""

    shape: str
    colour: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # gradient end colours
    gradient_angle: float
    centre: tuple[float, float]  # (x, y) in pixels
    radius: float
    angle: float  # degrees
    noise_seed: int


@dataclass(frozen=True)
class Motion:
    """How the shape changes per frame: its class and the speed of that change."""

    label: int
    speed: float  # px/frame (translations), degrees/frame (rotations) or relative size change/frame


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw an appearance (the shape kept clearly apart from the background colour).

    Used by :func:`make_clips` as the state at the middle of the clip (see the module docstring).
    """
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    while True:
        colour = rng.uniform(0, 1, 3)
        bg = rng.uniform(0.1, 0.9, (2, 3))
        if np.abs(colour - bg.mean(0)).sum() > 0.9:
            break
    return Appearance(
        shape=shape,
        colour=tuple(float(v) for v in colour),
        background=(tuple(float(v) for v in bg[0]), tuple(float(v) for v in bg[1])),
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
        centre=(float(rng.uniform(0, FRAME_SIZE)), float(rng.uniform(0, FRAME_SIZE))),
        radius=float(math.exp(rng.uniform(math.log(4.0), math.log(8.0)))),
        angle=float(rng.uniform(0, 360)),
        noise_seed=int(rng.integers(2**31)),
    )


def sample_motion(label: int, rng: np.random.Generator) -> Motion:
    """Draw the speed of a motion class."""
    check_label(label)
    if label < 4:
        speed = rng.uniform(2.0, 2.5)
    elif label < 6:
        speed = rng.uniform(12.0, 16.0)
    else:
        speed = rng.uniform(0.08, 0.11)
    return Motion(label, float(speed))


def check_label(label: int) -> None:
    """Raise a DGNError unless ``label`` is a class index of this world."""
    if not 0 <= label < len(SHAPE_CLASSES):
        raise DGNError(f"unknown shape-motion class {label}; valid: 0..{len(SHAPE_CLASSES) - 1} ({', '.join(SHAPE_CLASSES)})")


def _state(appearance: Appearance, motion: Motion, t: int) -> tuple[float, float, float, float]:
    """(x, y, radius, angle) of the shape at frame t."""
    x, y = appearance.centre
    radius, angle = appearance.radius, appearance.angle
    d = motion.speed * t
    label = motion.label
    if label == 0:
        x -= d
    elif label == 1:
        x += d
    elif label == 2:
        y -= d
    elif label == 3:
        y += d
    elif label == 4:
        angle -= d  # image y points down, so decreasing the maths angle turns clockwise on screen
    elif label == 5:
        angle += d
    elif label == 6:
        radius *= (1 + motion.speed) ** t
    else:
        radius /= (1 + motion.speed) ** t  # the exact time reverse of growing
    return x, y, radius, angle


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership in the unit shape, in local coordinates (u along the shape's axis, v across, radius 1)."""
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.4)
    if shape == "triangle":  # apex at u = 1, base at u = -0.6: not symmetric under small rotations
        return (u >= -0.6) & (u <= 1.0) & (np.abs(v) <= 0.55 * (1.0 - u))
    return (u * u + v * v <= 1.0) & (u >= 0)  # half-disc


def _background(appearance: Appearance, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    ca, sa = math.cos(appearance.gradient_angle), math.sin(appearance.gradient_angle)
    w = ((xx - 0.5) * ca + (yy - 0.5) * sa) / math.sqrt(2) + 0.5
    a, b = (np.array(c) for c in appearance.background)
    return (1 - w)[..., None] * a + w[..., None] * b


def render_frame(appearance: Appearance, motion: Motion, t: int, size: int = FRAME_SIZE) -> np.ndarray:
    """Frame t of a clip: (size, size, 3) float RGB in 0..1."""
    x, y, radius, angle = _state(appearance, motion, t)
    n = size * _SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / _SUPERSAMPLE  # sub-pixel centres in pixel units
    py, px = np.meshgrid(coords, coords, indexing="ij")
    theta = math.radians(angle)
    dx = (px - x + size / 2) % size - size / 2  # the frame is a torus: shortest offset to the centre
    dy = -((py - y + size / 2) % size - size / 2)  # maths orientation: y up
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / max(radius, 1e-3)
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / max(radius, 1e-3)
    cover = _inside(appearance.shape, u, v).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean((1, 3))
    frame = _background(appearance, size) * (1 - cover[..., None]) + np.array(appearance.colour) * cover[..., None]
    noise = np.random.default_rng([appearance.noise_seed, t]).normal(0, 0.02, frame.shape)
    return np.clip(frame + noise, 0, 1)


def render_clip(appearance: Appearance, motion: Motion, frames: int = CLIP_FRAMES, size: int = FRAME_SIZE) -> np.ndarray:
    """A clip: (frames, size, size, 3) uint8 RGB."""
    return np.stack([(render_frame(appearance, motion, t, size) * 255 + 0.5).astype(np.uint8) for t in range(frames)])


def start_from_middle(middle: Appearance, motion: Motion, frames: int = CLIP_FRAMES) -> Appearance:
    """The first-frame state of a clip whose state at its middle, t = (frames - 1) / 2, is ``middle``."""
    x, y, radius, angle = _state(middle, motion, 0)
    x1, y1, radius1, angle1 = _state(middle, motion, 1)  # one frame on
    half = (frames - 1) / 2
    # the state is affine in t for translations and rotations, geometric for sizes: go back half a clip
    x0 = (x - (x1 - x) * half) % FRAME_SIZE
    y0 = (y - (y1 - y) * half) % FRAME_SIZE
    angle0 = angle - (angle1 - angle) * half
    radius0 = radius * (radius / radius1) ** half
    return replace(middle, centre=(x0, y0), radius=radius0, angle=angle0)


def _draw_clips(count: int, seed: int, frames: int) -> tuple[np.ndarray, list[tuple[Appearance, Motion]]]:
    """The labels and the (first-frame appearance, motion) of ``count`` clips, all from ``seed``."""
    if count < 1:
        raise DGNError(f"clip count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(SHAPE_CLASSES))
    draws = []
    for label in labels:
        middle = sample_appearance(rng)
        motion = sample_motion(int(label), rng)
        draws.append((start_from_middle(middle, motion, frames), motion))
    return labels.astype(np.int64), draws


def make_clips(count: int, seed: int, frames: int = CLIP_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips with balanced labels (label = index mod 8, then shuffled), all from ``seed``.

    Returns:
        (clips (count, frames, 32, 32, 3) uint8 RGB, labels (count,) int64).
    """
    labels, draws = _draw_clips(count, seed, frames)
    clips = np.empty((count, frames, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    for i, (appearance, motion) in enumerate(draws):
        clips[i] = render_clip(appearance, motion, frames)
    return clips, labels


def frame_states(count: int, seed: int, frames: int = CLIP_FRAMES) -> np.ndarray:
    """The shape's state in every frame of the clips ``make_clips(count, seed, frames)`` draws.

    Returns:
        (count, frames, 5) float64: x, y (pixels, wrapped onto the frame), radius (pixels), angle (degrees)
        and the shape's index in :data:`SHAPES`. Per-frame targets for pretraining a trunk.
    """
    _, draws = _draw_clips(count, seed, frames)
    out = np.empty((count, frames, 5))
    for i, (appearance, motion) in enumerate(draws):
        for t in range(frames):
            x, y, radius, angle = _state(appearance, motion, t)
            out[i, t] = (x % FRAME_SIZE, y % FRAME_SIZE, radius, angle, SHAPES.index(appearance.shape))
    return out


def clips_to_tensor(clips: np.ndarray) -> torch.Tensor:
    """uint8 clips (N, T, H, W, 3) -> float RGB 0..1 frames, time-major (T, N, 3, H, W)."""
    return torch.from_numpy(clips).permute(1, 0, 4, 2, 3).float().div(255)

"""Real-image starts: the generator code of an image, from the prior's encoder or by inversion.

- ``encode`` (act_max's ``--init_file``, its ``3_start_from_real_image.sh``): the image, resized whole to
  the encoder's input size, goes through the encoder in the encoder's pixel space; the code is the
  layer's output, post-ReLU where a ReLU follows (the fc6 blob act_max read after a full forward, its
  ReLU being in place).
- ``invert``: the code is optimised (Adam, in the prior's box, no decay) until G(code), as the
  classifier sees it, reproduces the image: for priors whose encoder is not at hand or not the network
  the prior was trained on.

Both report how well G(code) reproduces the image: the RMS difference in RGB 0..1 at the classifier's
input size (:func:`reconstruction_rmse`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dgn import spaces
from dgn.data import load_images
from dgn.encoding import encode, resolve_spaces
from dgn.engine import AdamStep, Problem, optimise
from dgn.errors import DGNError, check_at_least, check_choice
from dgn.frames import load_frames
from dgn.models import Classifier, Generator, load_classifier
from dgn.params import GeneratorCodes, resize

INIT_MODES = ("encode", "invert")


def encoder_of(
    generator: Generator, random_weights: bool = False, seed: int = 0, weights_dir: str | None = None
) -> tuple[Classifier, str]:
    """The network and layer the prior was trained to invert, loaded (e.g. CaffeNet and ``fc6``)."""
    if generator.encoder is None:
        raise DGNError(f"generator {generator.name!r} has no known encoder; start by inversion instead "
                       "(--init-mode invert)")
    name, _, layer = generator.encoder.partition(":")
    try:
        return load_classifier(name, random_weights, seed, weights_dir), layer
    except DGNError as err:
        raise DGNError(f"{err} (the encoder of {generator.name}); or start by inversion (--init-mode invert), "
                       "which needs only the generator") from None


def encode_codes(encoder: Classifier, layer: str, images: torch.Tensor, code_shape: Sequence[int]) -> torch.Tensor:
    """The codes (N, *code_shape) of RGB 0..1 images: ``layer``'s output, post-ReLU where a ReLU follows.

    The images are resized whole to the encoder's input size first (as act_max's ``imresize``).
    """
    (space,) = resolve_spaces(encoder, [layer])
    size = encoder.space.size
    rgb = resize(images.float(), size) if size is not None else images.float()
    flat = torch.from_numpy(encode(encoder, rgb, [space])[space.name])
    if flat.shape[1] != math.prod(code_shape):
        raise DGNError(f"{encoder.name} layer {layer!r} has {flat.shape[1]} units but the code has "
                       f"{math.prod(code_shape)}")
    return flat.reshape(len(flat), *code_shape)


@torch.no_grad()
def reconstruction_rmse(param: GeneratorCodes, codes: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per image, the RMS difference in RGB 0..1 between the image and G(code) as the model sees it."""
    device = next(iter(param.generator.module.parameters()), torch.zeros(())).device
    seen = spaces.to_rgb01(param.to_image(codes.to(device)), param.target).clamp(0, 1).float().cpu()
    target = resize(images.float(), tuple(seen.shape[-2:]))
    return (seen - target).pow(2).flatten(1).mean(1).sqrt()


@dataclass(frozen=True)
class Inversion:
    """How :func:`invert_codes` fits a code to an image: ``steps`` Adam steps from the middle of the box.

    ``lr`` is a share of the box's mean upper bound (so priors of different code scales move alike), or
    the step size itself when the box has no upper bound. Measured on the CIFAR-10 world (20 ships, 200
    steps): RMS error 0.052 (RGB 0..1) against 0.133 for the encoder's code.
    """

    steps: int = 200
    lr: float = 0.04

    def __post_init__(self) -> None:
        check_at_least("inversion steps", self.steps, 1)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DGNError(f"inversion lr must be a finite number > 0, got {self.lr}")


def invert_codes(param: GeneratorCodes, images: torch.Tensor, how: Inversion = Inversion()) -> torch.Tensor:
    """Codes whose images, as ``param``'s model sees them, best reproduce RGB 0..1 ``images`` (pixel MSE).

    Every image is fitted independently (a batch gives the same codes as one by one); the codes stay in
    ``param``'s box, without its decay. Returns the iterate with the lowest error.
    """
    device = param.device
    box = dataclasses.replace(param.project, decay=1.0)
    size = param.target.size
    target = (resize(images.float(), size) if size is not None else images.float()).to(device)
    start = torch.zeros(len(images), *param.generator.code_shape, device=device)
    lr = how.lr
    if box.upper is not None:
        start = (box.upper / 2).expand_as(start).clone()
        lr = how.lr * float(box.upper.mean())

    def neg_mse(acts: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
        seen = spaces.to_rgb01(acts["image"], param.target)
        return -(seen - target).pow(2).flatten(1).mean(1)

    problem = Problem(start=start, image=param.to_image, forward=lambda image: {"image": image}, objective=neg_mse,
                      step=AdamStep(lr), project=box)
    return optimise(problem, how.steps).best


def read_start_images(sources: Sequence[str | os.PathLike], size: tuple[int, int] | None) -> torch.Tensor:
    """RGB 0..1 images (N, 3, H, W) resized whole to ``size``: each source an image file, or a GIF or a folder of
    frames, which adds all its frames (a video's start)."""
    parts = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise DGNError(f"start image {path} does not exist")
        if path.is_dir() or path.suffix.lower() == ".gif":
            frames = load_frames(path)
            parts.append(spaces.fit(frames, size, "resize") if size is not None else frames)
        else:
            parts.append(load_images([path], size))
    if not parts:
        raise DGNError("no start images given")
    return torch.cat(parts)


def start_size(param: GeneratorCodes, mode: str, encoder: tuple[Classifier, str] | None) -> tuple[int, int] | None:
    """The size start images are read at: the encoder's input for "encode", else the model's."""
    if mode == "encode" and encoder is not None and encoder[0].space.size is not None:
        return encoder[0].space.size
    return param.target.size


def start_codes(
    param: GeneratorCodes,
    images: torch.Tensor,
    mode: str = "encode",
    encoder: tuple[Classifier, str] | None = None,
    inversion: Inversion = Inversion(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start codes of RGB 0..1 images, and each one's reconstruction RMS error (RGB 0..1).

    Args:
        param: the run's parameterisation (the prior, the model's pixel space, the box).
        images: (N, 3, H, W), e.g. from :func:`read_start_images` at :func:`start_size`.
        mode: "encode" (needs ``encoder``: the network and layer, see :func:`encoder_of`) or "invert".
        encoder: for "encode".
        inversion: the settings of "invert".
    """
    check_choice("init mode", mode, INIT_MODES)
    if mode == "encode":
        if encoder is None:
            raise DGNError("encode mode needs the prior's encoder (see starts.encoder_of)")
        codes = encode_codes(encoder[0], encoder[1], images, param.generator.code_shape)
    else:
        codes = invert_codes(param, images, inversion)
    codes = codes.to(param.device)
    return codes, reconstruction_rmse(param, codes, images)


def starts_from_files(
    param: GeneratorCodes,
    sources: Sequence[str | os.PathLike],
    mode: str = "encode",
    random_weights: bool = False,
    seed: int = 0,
    weights_dir: str | None = None,
    inversion: Inversion = Inversion(),
) -> tuple[torch.Tensor, dict]:
    """Start codes of image files (see :func:`read_start_images`) and what a manifest records of them.

    "encode" loads the prior's encoder (:func:`encoder_of`; with ``random_weights``, seeded random weights).
    """
    check_choice("init mode", mode, INIT_MODES)
    encoder = encoder_of(param.generator, random_weights, seed, weights_dir) if mode == "encode" else None
    images = read_start_images(sources, start_size(param, mode, encoder))
    codes, rmse = start_codes(param, images, mode, encoder, inversion)
    record: dict = {"mode": mode, "images": [str(s) for s in sources],
                    "reconstruction_rmse": [round(float(e), 6) for e in rmse]}
    if encoder is not None:
        record["encoder"] = param.generator.encoder
    else:
        record["inversion"] = dataclasses.asdict(inversion)
    return codes, record


def kmeans(points: torch.Tensor, clusters: int, seed: int = 0, iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means (k-means++ seeding from ``seed``, then Lloyd's iterations until no point moves) of points (N, D).

    Returns:
        (centres (clusters, D), each point's cluster (N,)).
    """
    x = points.double().flatten(1)
    if not 1 <= clusters <= len(x):
        raise DGNError(f"cannot make {clusters} clusters of {len(x)} points")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    while len(centres) < clusters:
        d2 = torch.cdist(x, centres).min(1).values.pow(2)
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=g) if d2.sum() > 0 else torch.randint(len(x), (1,), generator=g)
        centres = torch.cat([centres, x[pick]])
    assign = torch.cdist(x, centres).argmin(1)
    for _ in range(iterations):
        for c in range(clusters):
            members = assign == c
            if members.any():  # an empty cluster keeps its centre
                centres[c] = x[members].mean(0)
        moved = torch.cdist(x, centres).argmin(1)
        if torch.equal(moved, assign):
            break
        assign = moved
    return centres.to(points.dtype), assign


def facet_codes(codes: torch.Tensor, facets: int, seed: int = 0) -> torch.Tensor:
    """Multifaceted starts (Nguyen, Yosinski & Clune 2016): the codes (N, ...) of a unit's top images grouped
    into ``facets`` clusters by k-means; each cluster's centre (a code) starts one restart. Centres are
    ordered by cluster size, largest first, so restart 0 shows the unit's commonest facet."""
    centres, assign = kmeans(codes.flatten(1).float(), facets, seed)
    sizes = torch.bincount(assign, minlength=facets)
    order = sorted(range(facets), key=lambda c: (-int(sizes[c]), c))
    return centres[order].reshape(facets, *codes.shape[1:])

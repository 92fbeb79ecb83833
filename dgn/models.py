"""Generators and classifiers by name: architecture, pixel space, and weights.

A :class:`Generator` maps codes to images in its declared pixel space; a :class:`Classifier`
declares the pixel space and size of its input. ``load_generator`` / ``load_classifier`` build the
named architecture and load its weights from the registry (``dgn.weights``), or give it seeded
random weights (``random_weights=True``) for smoke tests and benchmarks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dgn import spaces
from dgn.errors import DGNError
from dgn.files import sha256_file
from dgn.nets.caffenet import CaffeNet
from dgn.nets.deepsim import DeePSimGenerator
from dgn.spaces import PixelSpace

CIFAR10_RESNET = PixelSpace("cifar10-resnet", "RGB", 1.0, spaces.IMAGENET_MEAN_RGB, spaces.IMAGENET_STD_RGB, (32, 32))


@dataclass
class Generator:
    """A code -> image network and what its output means.

    Attributes:
        module: the network; takes (B, *code_shape), returns (B, C, H, W) in ``space``.
        space: pixel space of the output (with its size).
        code_shape: shape of one code.
        name: registry / architecture name.
        default_upper_bound: scalar code upper bound used when no bounds file is given.
        weights_sha256: checksum of the loaded weights, or ``"random:<seed>"``.
        encoder: ``"CLASSIFIER:LAYER"``, the network and layer whose output the prior was trained to invert
            (its codes are that layer's outputs, post-ReLU where a ReLU follows); None when unknown.
    """

    module: nn.Module
    space: PixelSpace
    code_shape: tuple[int, ...]
    name: str
    default_upper_bound: float = 12.0
    weights_sha256: str = ""
    encoder: str | None = None

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self.module(codes)

    def to(self, device: torch.device | str) -> Generator:
        self.module.to(device)
        return self


@dataclass
class Classifier:
    """A network whose units we visualise, with the pixel space and size of its input."""

    module: nn.Module
    space: PixelSpace
    name: str
    weights_sha256: str = ""
    class_names: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Classifier:
        self.module.to(device)
        return self


# The default scalar upper bound for DeePSim fc6-like codes: the median of the original 3-sigma bounds
# file (act_range/3x/fc6.txt: min 3, median 12, max 17). Used only when no bounds file is given.
DEEPSIM_DEFAULT_UPPER = 12.0


@dataclass(frozen=True)
class Architecture:
    """How to build one named network."""

    kind: str  # "generator" or "classifier"
    build: Callable[[], nn.Module]
    space: PixelSpace
    code_shape: tuple[int, ...] = ()
    default_upper_bound: float = DEEPSIM_DEFAULT_UPPER  # scalar code bound when no bounds file is given (generators)
    encoder: str | None = None  # generators: "CLASSIFIER:LAYER" whose output is the code


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        kwargs: dict = {"weights": None}
        if name == "googlenet":
            kwargs.update(aux_logits=False, init_weights=False)
        return getattr(torchvision.models, name)(**kwargs)

    return build


def _cifar_caffenet() -> nn.Module:
    from dgn.nets.toy import cifar_caffenet

    return cifar_caffenet()


def _cifar_generator() -> nn.Module:
    from dgn.nets.toy import cifar_generator

    return cifar_generator()


def _video_lrcn_shapes() -> nn.Module:
    from dgn.nets.lrcn import lrcn_shapes

    return lrcn_shapes()


def _resnet20() -> nn.Module:
    from dgn.nets.resnet_cifar import resnet20_cifar10

    return resnet20_cifar10()


_CAFFE_256 = spaces.CAFFE_BGR_IMAGENET.with_size((256, 256))
_TV_224 = spaces.TORCHVISION_IMAGENET.with_size((224, 224))

ARCHITECTURES: dict[str, Architecture] = {
    "deepsim-fc6": Architecture("generator", lambda: DeePSimGenerator("fc6"), _CAFFE_256, (4096,),
                                 encoder="caffenet:fc6"),
    "deepsim-fc7": Architecture("generator", lambda: DeePSimGenerator("fc7"), _CAFFE_256, (4096,),
                                 encoder="caffenet:fc7"),
    "deepsim-fc8": Architecture("generator", lambda: DeePSimGenerator("fc8"), _CAFFE_256, (1000,),
                                 encoder="caffenet:fc8"),
    "deepsim-pool5": Architecture("generator", lambda: DeePSimGenerator("pool5"), _CAFFE_256, (256, 6, 6),
                                 encoder="caffenet:pool5"),
    "caffenet": Architecture("classifier", CaffeNet, spaces.CAFFE_BGR_IMAGENET.with_size((227, 227))),
    "alexnet": Architecture("classifier", _torchvision("alexnet"), _TV_224),
    "vgg16": Architecture("classifier", _torchvision("vgg16"), _TV_224),
    "googlenet": Architecture("classifier", _torchvision("googlenet"), _TV_224),
    "resnet50": Architecture("classifier", _torchvision("resnet50"), _TV_224),
    "resnet20-cifar10": Architecture("classifier", _resnet20, CIFAR10_RESNET),
    # The offline CIFAR-10 world (shipped weights): a CaffeNet-shaped classifier and a prior on its fc6.
    "cifar-caffenet": Architecture("classifier", _cifar_caffenet, spaces.CAFFE_BGR_IMAGENET.with_size((32, 32))),
    # Its 3-sigma bounds file has median 2 (max 5): its fc6 activations are on a smaller scale than CaffeNet's.
    "cifar-deepsim-fc6": Architecture(
        "generator", _cifar_generator, spaces.CAFFE_BGR_IMAGENET.with_size((32, 32)), (512,), 2.0, "cifar-caffenet:fc6"
    ),
    # The offline video world (dgn.data_video): a small LRCN; takes (T, N, 3, 32, 32) clips, or images as 1-frame clips.
    "video-lrcn-shapes": Architecture("classifier", _video_lrcn_shapes, spaces.CAFFE_BGR_IMAGENET.with_size((32, 32))),
}


def names(kind: str) -> list[str]:
    """Architecture names of one kind ("generator" or "classifier")."""
    return [n for n, a in ARCHITECTURES.items() if a.kind == kind]


def _architecture(name: str, kind: str) -> Architecture:
    arch = ARCHITECTURES.get(name)
    if arch is None or arch.kind != kind:
        raise DGNError(f"unknown {kind} {name!r}; valid: {', '.join(names(kind))}")
    return arch


def _init_generator_randomly(module: nn.Module) -> None:
    """He initialisation for leaky ReLU 0.3 (as DeePSim's msra fillers), with a visible output scale."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
            nn.init.kaiming_normal_(layer.weight, a=0.3, mode=fan_mode, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)
    last = getattr(module, "deconv0", None)
    if last is not None:
        with torch.no_grad():
            last.weight.mul_(40.0)  # about +-40 on the 0..255 scale: images with visible contrast


def _init_classifier_randomly(module: nn.Module) -> None:
    """He weights, so a random CaffeNet's deep units respond like a trained net's (not ~0), and the
    biases of Caffe's reference fillers (1 for conv2, conv4, conv5, fc6, fc7; else 0), so units are
    alive even at an all-zero input (where image-space methods start)."""
    for name, layer in module.named_modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.constant_(layer.bias, 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """A checksum of a state_dict's names and values (independent of the file format)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _build(name: str, kind: str, random_weights: bool, seed: int, weights_dir: str | None) -> tuple[nn.Module, str]:
    arch = _architecture(name, kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = arch.build()
        if random_weights and kind == "generator":
            _init_generator_randomly(module)
        elif random_weights and isinstance(module, CaffeNet):
            _init_classifier_randomly(module)
    if random_weights:
        sha = f"random:{seed}"
    else:
        from dgn import weights

        state = weights.load_state_dict(name, weights_dir=weights_dir)
        load_checked(module, state, name)
        sha = state_dict_sha256(state)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module, sha


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load a state_dict, raising a DGNError that names the first missing, unexpected or mis-shaped layer."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise DGNError(f"weights for {name!r} do not match the architecture: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise DGNError(
                f"weights for {name!r}: layer {key!r} has shape {tuple(tensor.shape)}, expected {tuple(own[key].shape)}"
            )
    module.load_state_dict(state)


def load_generator(
    name: str, random_weights: bool = False, seed: int = 0, weights_dir: str | None = None
) -> Generator:
    """Build a named generator (see ``names("generator")``) with real or seeded random weights."""
    arch = _architecture(name, "generator")
    module, sha = _build(name, "generator", random_weights, seed, weights_dir)
    return Generator(module, arch.space, arch.code_shape, name, arch.default_upper_bound, sha, arch.encoder)


def load_classifier(
    name: str, random_weights: bool = False, seed: int = 0, weights_dir: str | None = None
) -> Classifier:
    """Build a named classifier (see ``names("classifier")``) with real or seeded random weights."""
    arch = _architecture(name, "classifier")
    module, sha = _build(name, "classifier", random_weights, seed, weights_dir)
    return Classifier(module, arch.space, name, sha)


def load_caffe_classifier(
    prototxt: str, caffemodel: str | None, space: str = "caffe-bgr-imagenet", random_weights: bool = False
) -> Classifier:
    """Any Caffe classifier as a target: built from its deploy prototxt, weights from a .caffemodel.

    Args:
        prototxt: the deploy net description (its input shape gives the input size).
        caffemodel: the weights; required unless ``random_weights``.
        space: the pixel space its input expects (see ``dgn.spaces.SPACES``).
    """
    from dgn import caffe

    if caffemodel is None and not random_weights:
        raise DGNError(f"a Caffe classifier needs --caffemodel with {prototxt} (or --random-weights)")
    module = caffe.build_module(prototxt, None if random_weights else caffemodel)
    shapes = list(module.input_shapes.values())
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise DGNError(f"{prototxt} must declare one image input (N, C, H, W); found {shapes}")
    _, channels, height, width = shapes[0]
    pixel_space = spaces.get_space(space).with_size((height, width))
    if pixel_space.channels != channels:
        raise DGNError(f"{prototxt} takes {channels}-channel input but space {space!r} has {pixel_space.channels}")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    sha = "random:0" if random_weights else sha256_file(caffemodel)
    return Classifier(module, pixel_space, str(prototxt), sha)


def model_record(model: Generator | Classifier) -> dict:
    """What a manifest records of a model: name, weights sha256, pixel space, and code shape or input size."""
    record = {"name": model.name, "weights_sha256": model.weights_sha256, "space": model.space.name}
    if isinstance(model, Generator):
        record["code_shape"] = list(model.code_shape)
    else:
        record["input_size"] = list(model.space.size or ())
    return record


def input_shape(classifier: Classifier) -> tuple[int, int, int]:
    """(C, H, W) of the classifier's input."""
    if classifier.space.size is None:
        raise DGNError(f"classifier {classifier.name!r} does not declare an input size")
    return (classifier.space.channels, *classifier.space.size)

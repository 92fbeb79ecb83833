"""LRCN (Donahue et al. 2015): a per-frame CNN, an LSTM over its fc6 features, and fc8 at every time step.

``lrcn_ucf101()`` is the released RGB activity-recognition net exactly: conv1 96 7x7/2, ReLU, max pool
3/2 (Caffe rounds pooled sizes up: ``ceil_mode=True``), LRN(5, 1e-4, 0.75); conv2 384 5x5/2 group 2,
ReLU, pool, LRN; conv3 512 3x3 p1; conv4 512 3x3 p1 group 2; conv5 384 3x3 p1 group 2; pool5
(384x6x6 = 13,824 for a 227 input); fc6 4096 + ReLU (+ dropout 0.9 in training); LSTM 256 (+ dropout
0.5); fc8 101 applied at every time step. Input: 227x227 crops, BGR, 0..255 minus the per-channel mean
(103.939, 116.779, 128.68): :data:`LRCN_UCF101_SPACE`. ``lrcn_shapes()`` is the same structure sized for
the 32x32 frames of the offline moving-shapes world (``dgn.data_video``).

Layout: **time-major**, as Caffe's LRCN: frames ``(T, N, C, H, W)`` and clip markers ``cont`` of shape
``(T, N)``, where ``cont[t, n] = 0`` resets the LSTM state (h and c) before step t of stream n and 1
carries it on (Caffe's ``cont`` input). Without markers, every stream starts from a zero state at t=0.
A plain image batch ``(N, C, H, W)`` is read as N one-frame clips and gives ``(N, K)`` logits, so image
tools (``dgn layers``, hooks on conv1 ... fc8) work on the same module.

The LSTM (:class:`CaffeLSTM`) follows Caffe's equations with PyTorch's gate order (i, f, g, o): the
input-to-hidden weights carry the only bias; the hidden-to-hidden bias of ``nn.LSTM`` is zero (absent).
:func:`caffe_lstm_to_torch` converts Caffe's blobs (W_xc, b_c, W_hc; gate order i, f, o, g).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dgn import spaces
from dgn.errors import DGNError
from dgn.spaces import PixelSpace

LRCN_MEAN_BGR = (103.939, 116.779, 128.68)  # sic: 128.68, from the LRCN data layer and classify_video.py
LRCN_UCF101_SPACE = PixelSpace("lrcn-bgr-ucf101", "BGR", 255.0, LRCN_MEAN_BGR, (1.0, 1.0, 1.0), (227, 227))
SHAPES_SPACE = spaces.CAFFE_BGR_IMAGENET.with_size((32, 32))  # the CIFAR world's classifier space

# Caffe layer names of the released RGB LRCN -> module names here.
CAFFE_NAMES: dict[str, str] = {
    "conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "conv4": "conv4", "conv5": "conv5",
    "fc6": "fc6", "lstm1": "lstm", "fc8-final": "fc8",
}  # fmt: skip

# Caffe stacks the LSTM gates as (i, f, o, g); PyTorch as (i, f, g, o).
_CAFFE_TO_TORCH_GATES = (0, 1, 3, 2)


@dataclass(frozen=True)
class LRCNConfig:
    """Sizes of an LRCN.

    Attributes:
        channels: output channels of conv1 ... conv5.
        conv1: (kernel, stride, pad) of conv1.
        conv2: (kernel, stride, pad) of conv2.
        groups: groups of conv2, conv4 and conv5.
        lrn: Caffe LRN after pool1 and pool2 (``nn.Identity`` placeholders otherwise).
        input_size: (H, W) of a frame.
        fc6: width of fc6 (the LSTM input).
        hidden: LSTM units.
        num_classes: outputs of fc8.
        drop6, drop_lstm: dropout after fc6 and after the LSTM (training only).
    """

    channels: tuple[int, int, int, int, int] = (96, 384, 512, 512, 384)
    conv1: tuple[int, int, int] = (7, 2, 0)
    conv2: tuple[int, int, int] = (5, 2, 0)
    groups: int = 2
    lrn: bool = True
    input_size: tuple[int, int] = (227, 227)
    fc6: int = 4096
    hidden: int = 256
    num_classes: int = 101
    drop6: float = 0.9
    drop_lstm: float = 0.5


UCF101_CONFIG = LRCNConfig()
SHAPES_CONFIG = LRCNConfig(
    channels=(16, 32, 48, 48, 32), conv1=(5, 1, 2), conv2=(3, 1, 1), groups=2, lrn=False, input_size=(32, 32),
    fc6=128, hidden=64, num_classes=8, drop6=0.2, drop_lstm=0.0,
)  # fmt: skip


def caffe_lstm_to_torch(
    w_xc: torch.Tensor, b_c: torch.Tensor, w_hc: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Caffe LSTM blobs (gate order i, f, o, g) -> ``(weight_ih, bias_ih, weight_hh)`` in order i, f, g, o.

    Args:
        w_xc: (4H, D) input-to-hidden weights.
        b_c: (4H,) bias (Caffe's only LSTM bias).
        w_hc: (4H, H) hidden-to-hidden weights.
    """
    hidden = w_hc.shape[-1]
    if w_xc.shape[0] != 4 * hidden or b_c.numel() != 4 * hidden or w_hc.shape[0] != 4 * hidden:
        raise DGNError(
            f"LSTM blobs do not fit together: W_xc {tuple(w_xc.shape)}, b_c {tuple(b_c.shape)}, W_hc {tuple(w_hc.shape)} "
            f"(expected 4H x D, 4H, 4H x H)"
        )

    def permute(t: torch.Tensor) -> torch.Tensor:
        blocks = t.reshape(4, hidden, *t.shape[1:])
        return blocks[list(_CAFFE_TO_TORCH_GATES)].reshape(t.shape).contiguous()

    return permute(w_xc), permute(b_c.reshape(-1)), permute(w_hc)


class CaffeLSTM(nn.Module):
    """Caffe's LSTM layer (clip markers included), parameters in PyTorch's layout.

    ``weight_ih`` (4H, D), ``bias_ih`` (4H) and ``weight_hh`` (4H, H) are ``nn.LSTM``'s
    ``weight_ih_l0``, ``bias_ih_l0`` and ``weight_hh_l0`` with ``bias_hh_l0 = 0`` (see :meth:`torch_lstm_state`).
    Step t computes, with ``m = cont_t``::

        gates = W_ih x_t + b + W_hh (m * h_{t-1});  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid
        c_t = f * (m * c_{t-1}) + i * g;  h_t = o * tanh(c_t)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Caffe's LRCN filler: uniform(-0.01, 0.01) weights, zero bias."""
        nn.init.uniform_(self.weight_ih, -0.01, 0.01)
        nn.init.uniform_(self.weight_hh, -0.01, 0.01)
        nn.init.zeros_(self.bias_ih)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, gates=i,f,g,o"

    def forward(self, x: torch.Tensor, cont: torch.Tensor | None = None) -> torch.Tensor:
        """Run over a sequence.

        Args:
            x: (T, N, D) inputs, time-major.
            cont: (T, N) clip markers (0 = reset before this step); default: reset only at t = 0.

        Returns:
            h: (T, N, H) hidden states.
        """
        steps, batch = x.shape[0], x.shape[1]
        cont = _markers(cont, steps, batch, x)
        projected = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)  # all steps in one matmul
        h = x.new_zeros(batch, self.hidden_size)
        c = x.new_zeros(batch, self.hidden_size)
        out = []
        for t in range(steps):
            keep = cont[t].unsqueeze(1)
            h, c = h * keep, c * keep
            gates = projected[t] + h @ self.weight_hh.t()
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out)

    def torch_lstm_state(self) -> dict[str, torch.Tensor]:
        """The same weights as an ``nn.LSTM(input_size, hidden_size)`` state dict (``bias_hh_l0`` zero)."""
        return {
            "weight_ih_l0": self.weight_ih.detach().clone(),
            "weight_hh_l0": self.weight_hh.detach().clone(),
            "bias_ih_l0": self.bias_ih.detach().clone(),
            "bias_hh_l0": torch.zeros_like(self.bias_ih.detach()),
        }


def _markers(cont: torch.Tensor | None, steps: int, batch: int, like: torch.Tensor) -> torch.Tensor:
    if cont is None:
        return clip_markers(steps, batch).to(like)
    if tuple(cont.shape) != (steps, batch):
        raise DGNError(f"clip markers must have shape (T, N) = {(steps, batch)}, got {tuple(cont.shape)}")
    return cont.to(like)


def clip_markers(steps: int, batch: int = 1, clip_length: int | None = None) -> torch.Tensor:
    """Caffe ``cont`` markers (T, N): 0 at the first frame of every clip of ``clip_length`` (default: only t=0)."""
    cont = torch.ones(steps, batch)
    cont[:: clip_length or max(steps, 1)] = 0
    return cont


class LRCN(nn.Module):
    """An LRCN: conv1 ... fc6 per frame, an LSTM over time, fc8 at every step (see the module docstring).

    Submodules carry the Caffe names (conv1, relu1, pool1, norm1, ..., pool5, fc6, relu6, drop6, lstm,
    drop_lstm, fc8), so ``state_dict()`` keys are ``conv1.weight ... fc8.bias`` and ``lstm.weight_ih`` etc.

    Args:
        config: layer sizes (:data:`UCF101_CONFIG` is the released net).
    """

    _TRUNK = ("conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3",
              "conv4", "relu4", "conv5", "relu5", "pool5")  # fmt: skip

    def __init__(self, config: LRCNConfig = UCF101_CONFIG) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4, c5 = config.channels
        (k1, s1, p1), (k2, s2, p2), g = config.conv1, config.conv2, config.groups

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, 2, ceil_mode=True)  # Caffe rounds pooled sizes up

        def norm() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if config.lrn else nn.Identity()

        self.conv1, self.relu1, self.pool1, self.norm1 = nn.Conv2d(3, c1, k1, s1, p1), nn.ReLU(True), pool(), norm()
        self.conv2, self.relu2, self.pool2, self.norm2 = nn.Conv2d(c1, c2, k2, s2, p2, groups=g), nn.ReLU(True), pool(), norm()
        self.conv3, self.relu3 = nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(True)
        self.conv4, self.relu4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g), nn.ReLU(True)
        self.conv5, self.relu5, self.pool5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g), nn.ReLU(True), pool()
        side = self._pool5_side()
        self.pool5_shape = (c5, *side)
        self.fc6 = nn.Linear(c5 * side[0] * side[1], config.fc6)
        self.relu6, self.drop6 = nn.ReLU(True), nn.Dropout(config.drop6)
        self.lstm = CaffeLSTM(config.fc6, config.hidden)
        self.drop_lstm = nn.Dropout(config.drop_lstm)
        self.fc8 = nn.Linear(config.hidden, config.num_classes)

    def _pool5_side(self) -> tuple[int, int]:
        with torch.no_grad():
            x = torch.zeros(1, 3, *self.config.input_size)
            for name in self._TRUNK:
                layer = getattr(self, name)
                x = _conv_shape(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)  # shapes only
        return int(x.shape[-2]), int(x.shape[-1])

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Post-ReLU fc6 features (B, fc6) of a batch of frames (B, 3, H, W) in the net's pixel space."""
        x = frames
        for name in self._TRUNK:
            x = getattr(self, name)(x)
        return self.drop6(self.relu6(self.fc6(x.flatten(1))))

    def sequence(self, feats: torch.Tensor, cont: torch.Tensor | None = None) -> torch.Tensor:
        """fc8 logits (T, N, K) at every step from fc6 features (T, N, fc6) and clip markers (T, N)."""
        return self.fc8(self.drop_lstm(self.lstm(feats, cont)))

    def forward(self, x: torch.Tensor, cont: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of a video batch (T, N, 3, H, W) -> (T, N, K); an image batch (N, 3, H, W) -> (N, K).

        Args:
            x: frames in the net's pixel space, time-major.
            cont: (T, N) clip markers (0 = reset the state before this frame); default: reset at t = 0 only.
        """
        if x.dim() == 4:
            return self.forward(x.unsqueeze(0), cont)[0]
        if x.dim() != 5:
            raise DGNError(f"LRCN input must be (T, N, 3, H, W) or (N, 3, H, W), got shape {tuple(x.shape)}")
        steps, batch = x.shape[:2]
        feats = self.features(x.reshape(steps * batch, *x.shape[2:]))
        return self.sequence(feats.view(steps, batch, -1), cont)


def _conv_shape(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A zero tensor with the output shape of ``conv`` on ``x`` (no convolution computed)."""
    h, w = x.shape[-2:]
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    return x.new_zeros(x.shape[0], conv.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


def lrcn_ucf101() -> LRCN:
    """The released RGB LRCN (UCF-101, 101 classes), default PyTorch init: load real weights after."""
    return LRCN(UCF101_CONFIG)


def lrcn_shapes(num_classes: int = 8) -> LRCN:
    """The small LRCN of the offline moving-shapes world (32x32 frames, Caffe BGR ImageNet-mean space).

    Initialised for training from scratch: He weights, conv1 scaled down for the 0..255 input scale (so fc6
    does not saturate the LSTM's gates), LSTM weights U(-1/sqrt(H), 1/sqrt(H)) with the forget bias at 1,
    a small fc8.
    """
    from dataclasses import replace

    net = LRCN(replace(SHAPES_CONFIG, num_classes=num_classes))
    for layer in net.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    bound = net.lstm.hidden_size**-0.5  # nn.LSTM's range: Caffe's U(-0.01, 0.01) learns far slower from scratch
    nn.init.uniform_(net.lstm.weight_ih, -bound, bound)
    nn.init.uniform_(net.lstm.weight_hh, -bound, bound)
    with torch.no_grad():
        net.lstm.bias_ih[net.lstm.hidden_size : 2 * net.lstm.hidden_size] = 1.0  # forget gate open at the start
        net.conv1.weight.div_(64.0)  # frames minus the mean have a std of about 64 on the 0..255 scale
        net.fc8.weight.mul_(0.1)
    return net

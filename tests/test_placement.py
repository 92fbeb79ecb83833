"""How methods place their models: bf16 copies that keep the caller's fp32 weights and change no result."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dgn.baseline import ImageAM
from dgn.image_settings import ImageAMSettings
from dgn.layers import forward_to
from dgn.placement import bf16_copy, place
from dgn.synthesis import DGNAM, ActMaxSettings
from tests.tiny import tiny_classifier, tiny_pair


class ConversionLog(TorchDispatchMode):
    """The shapes of every tensor converted to another dtype while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and "dtype" in kwargs and kwargs["dtype"] != args[0].dtype:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **kwargs)


def weight_shapes(module: nn.Module) -> set[tuple[int, ...]]:
    return {tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)}


def test_bf16_copy_keeps_the_original_and_takes_and_returns_fp32():
    torch.manual_seed(0)
    model = nn.Sequential(tiny_classifier(), nn.BatchNorm1d(5)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = bf16_copy(model)
    assert all(torch.equal(before[k], v) and v.dtype == before[k].dtype for k, v in model.state_dict().items())
    assert twin[0].conv1.weight.dtype == twin[0].fc8.weight.dtype == torch.bfloat16
    assert twin[1].weight.dtype == torch.float32  # only convolution and linear weights go to bf16
    x = torch.randn(4, 3, 36, 36) * 50
    out, reference = twin(x), model(x)
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()
    acts = forward_to(twin, x, ["0.conv2", "0.fc6"])  # layer names and hooks work on the copy
    assert acts["0.fc6"].shape == (4, 32) and acts["0.fc6"].dtype == torch.bfloat16


def test_place_makes_cpu_weights_channels_last_in_place_and_copies_only_for_bf16():
    model = tiny_classifier()
    assert place(model, torch.device("cpu")) is model
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last) and not model.training
    twin = place(model, torch.device("cpu"), "bf16")
    assert twin is not model and model.conv1.weight.dtype == torch.float32
    assert twin.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_bf16_dgnam_step_converts_no_weight_and_computes_what_autocast_did():
    gen, clf = tiny_pair()
    settings = ActMaxSettings(steps=6, precision="bf16")
    kept = DGNAM(gen, clf, settings, device="cpu")
    assert next(gen.module.parameters()).dtype == next(clf.module.parameters()).dtype == torch.float32
    rows = kept.plan(["fc8:1", "conv2:3", "fc6:7"])
    with ConversionLog() as log:
        result = kept.optimise(rows, upper_bound=3.0)
    weights = weight_shapes(gen.module) | weight_shapes(clf.module)
    assert log.shapes and not weights & set(log.shapes)  # activations are converted, weights never
    # Autocast over the fp32 models (precision switched after placing them) converts the weights every step...
    recast = DGNAM(gen, clf, replace(settings, precision="fp32"), device="cpu")
    recast.settings = settings
    with ConversionLog() as log:
        reference = recast.optimise(rows, upper_bound=3.0)
    assert weights & set(log.shapes)
    # ...to the same bf16 values: the images and activations are the same.
    assert torch.equal(result.codes_last, reference.codes_last)
    assert torch.equal(result.act_end, reference.act_end)
    assert (result.act_end > result.act_start).all()


def test_image_am_in_bf16_leaves_its_classifier_fp32_and_still_climbs():
    _, clf = tiny_pair()
    am = ImageAM(clf, ImageAMSettings(steps=20, lr=2.0, precision="bf16"), device="cpu")
    assert next(clf.module.parameters()).dtype == torch.float32
    result = am.synthesize(["fc8:2"])
    assert result.act_end.item() > result.act_start.item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dgnam_returns_fp32_codes_at_either_precision(precision):
    gen, clf = tiny_pair()
    result = DGNAM(gen, clf, ActMaxSettings(steps=3, precision=precision), device="cpu").synthesize(["fc8:0"])
    assert result.codes_last.dtype == result.act_end.dtype == torch.float32

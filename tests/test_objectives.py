import pytest
import torch

from dgn.errors import DGNError
from dgn.objectives import UnitObjective, balance_penalty
from dgn.synthesis import DGNAM, ActMaxSettings
from dgn.targets import Target, split_pair
from tests.tiny import tiny_pair


def test_pair_objective_by_hand():
    acts = {"fc": torch.tensor([[3.0, 1.0, 0.0], [2.0, 5.0, 4.0]])}
    a, b, c = Target("fc", 0), Target("fc", 1), Target("fc", 2)
    objective = UnitObjective([a, b], partners=[b, None], gamma=0.5, code_penalty=0.1)
    codes = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    # row 0: a + b - gamma |a - b| - 0.1 * ||(3, 4)|| = 3 + 1 - 0.5 * 2 - 0.5 = 2.5; row 1: unit 1 alone = 5
    assert torch.allclose(objective(acts, codes), torch.tensor([2.5, 5.0]))
    first, second = objective.pair_values(acts)
    assert torch.equal(first, torch.tensor([3.0, 5.0])) and torch.equal(second, torch.tensor([1.0, 5.0]))
    assert objective.rows([1]).partners == [None] and UnitObjective([a], partners=[c]).layers == ("fc",)


def test_smooth_balance_penalty_by_hand():
    d = torch.tensor([0.0, 3.0, -4.0, 1000.0])
    assert torch.equal(balance_penalty(d), d.abs())
    # sqrt(d^2 + 4^2) - 4: 0, 1, sqrt(32) - 4, and |d| - 4 + O(1/|d|) far from balance
    expected = torch.tensor([0.0, 1.0, 32**0.5 - 4, 1000.0 - 4 + 8 / 1000])
    torch.testing.assert_close(balance_penalty(d, 4.0), expected, rtol=0, atol=1e-4)
    # at balance both units get the full gradient of a + b; |a - b| would push only one of them
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    (a + b - balance_penalty(a - b, 1.0)).backward()
    assert float(a.grad) == float(b.grad) == 1.0
    acts = {"fc": torch.tensor([[5.0, 2.0]])}
    smooth = UnitObjective([Target("fc", 0)], partners=[Target("fc", 1)], gamma=1.0, smoothing=4.0)
    assert torch.allclose(smooth(acts), torch.tensor([7.0 - 1.0]))  # 5 + 2 - (sqrt(9 + 16) - 4)
    assert smooth.rows([0]).smoothing == 4.0
    with pytest.raises(DGNError, match="pair_smoothing"):
        ActMaxSettings(pair_smoothing=-1)


def test_split_pair():
    assert split_pair("fc8:1+fc8:3") == ("fc8:1", "fc8:3")
    assert split_pair("fc8:1") == ("fc8:1", None)
    with pytest.raises(DGNError, match="A\\+B"):
        split_pair("fc8:1+fc8:2+fc8:3")


def imbalance(gamma: float) -> float:
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=60, pair_gamma=gamma), device="cpu")
    result = dgnam.synthesize(["fc8:0+fc8:1", "fc8:2+fc8:3", "fc8:1+fc8:4", "fc8:0+fc8:3"], restarts=2)
    a, b = result.pair_end[:, 0], result.pair_end[:, 1]
    return float(((a - b).abs() / torch.maximum(a.abs(), b.abs())).median())


def test_balance_penalty_pulls_the_two_activations_together():
    assert imbalance(1.0) < imbalance(0.0)


def test_pair_rows_carry_both_activations():
    gen, clf = tiny_pair()
    result = DGNAM(gen, clf, ActMaxSettings(steps=5), device="cpu").synthesize(["fc8:0", "fc8:0+fc8:1"])
    assert result.rows[1].key == "fc8:0+fc8:1#r0" and result.rows[0].partner is None
    assert result.row_extra(0) == {}
    extra = result.row_extra(1)
    assert extra["partner"] == "fc8:1" and {"act_a", "act_b"} <= set(extra)


def test_channel_layer_and_direction_values_by_hand(tmp_path):
    import numpy as np

    from dgn.objectives import TargetValues

    conv = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2) - 10  # (B, C, H, W)
    fc = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    np.save(tmp_path / "v.npy", np.array([1.0, 0.0, -1.0], dtype=np.float32))
    v = str(tmp_path / "v.npy")
    rows = [Target("conv", 1, None, "unit", True), Target("conv", kind="layer"),
            Target("conv", -1, (1, 0), "direction", False, v), Target("fc", -1, None, "direction", False, v)]
    got = TargetValues(rows).gather({"conv": conv.repeat(2, 1, 1, 1), "fc": fc.repeat(2, 1)})
    expected = torch.tensor([
        float(conv[0, 1].mean()),                                   # row 0: channel 1's mean
        float(conv[1].pow(2).mean()),                               # row 1: the layer's mean square
        float(conv[0, 0, 1, 0] - conv[0, 2, 1, 0]),                 # row 2 (= batch row 0 of the repeat): v . a[:, 1, 0]
        float(fc[1, 0] - fc[1, 2]),                                 # row 3: v . a
    ])
    torch.testing.assert_close(got, expected)
    relu = TargetValues(rows[:1]).gather({"conv": conv}, post_relu=True)
    torch.testing.assert_close(relu, conv[0, 1].clamp_min(0).mean()[None])
    # rows do not depend on each other: each row alone gives the same value
    for i, target in enumerate(rows):
        alone = TargetValues([target]).gather({"conv": conv.repeat(2, 1, 1, 1)[i : i + 1], "fc": fc.repeat(2, 1)[i : i + 1]})
        torch.testing.assert_close(alone, expected[i : i + 1])


def test_diversity_by_hand_and_only_within_a_group():
    from dgn.objectives import Diversity

    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    term = Diversity(["x", "x", "y"], ["fc"] * 3, weight=2.0)
    # rows 0 and 1 are siblings: cos = 1/sqrt(2), cos^2 = 1/2; row 2 is alone
    torch.testing.assert_close(term({"fc": a}), torch.tensor([-1.0, -1.0, 0.0]))
    conv = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    features = conv.flatten(2)
    gram = (features @ features.transpose(1, 2) / 16).flatten(1)
    cos = torch.nn.functional.cosine_similarity(gram[0], gram[1], dim=0)
    torch.testing.assert_close(Diversity(["x", "x"], ["c", "c"])({"c": conv}), -cos.repeat(2))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_diversity_pushes_near_identical_restarts_apart(seed):
    """Two restarts 0.01 apart end with almost the same features (Gram cosine similarity ~1) without the
    term, and clearly different ones with it, while their unit still rises."""
    from dgn.layers import forward_to
    from dgn.objectives import Diversity

    gen, clf = tiny_pair()
    start = torch.rand(1, 16, generator=torch.Generator().manual_seed(seed)) * 2
    codes = torch.cat([start, start + 0.01])
    similarity = {}
    for weight in (0.0, 10.0):
        settings = ActMaxSettings(steps=20, lr_start=1.0, diversity=weight, diversity_layer="conv2")
        dgnam = DGNAM(gen, clf, settings, "cpu")
        result = dgnam.synthesize(["fc8:1"], restarts=2, start=codes)
        with torch.no_grad():
            acts = forward_to(clf.module, dgnam.image_for_classifier(result.codes_last), ["conv2"])
        similarity[weight] = -float(Diversity(["t", "t"], ["conv2", "conv2"])(acts)[0])
        assert (result.act_best > result.act_start + 0.1).all()  # the record is the unit's, and it rose
    assert similarity[0.0] > 0.95 and similarity[10.0] < 0.8, similarity


def test_coupled_restarts_run_together_whatever_the_batch_size():
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=5, lr_start=1.0, diversity=5.0), "cpu")
    one = dgnam.synthesize(["fc8:1", "conv2:3@mean"], restarts=2, batch_size=1)
    four = dgnam.synthesize(["fc8:1", "conv2:3@mean"], restarts=2, batch_size=4)
    torch.testing.assert_close(one.codes_last, four.codes_last)
    rows = dgnam.plan(["fc8:1", "conv2:3@mean"], restarts=2)
    resumed = dgnam.synthesize(["fc8:1", "conv2:3@mean"], restarts=2, skip=[rows[0].key])  # its sibling needs it
    assert [r.key for r in resumed.rows] == [r.key for r in rows]
    torch.testing.assert_close(resumed.codes_last, four.codes_last)


def test_new_target_kinds_rise_under_dgn_am(tmp_path):
    (tmp_path / "v.txt").write_text("1 -1 0.5 0 0 2 0 -1")
    gen, clf = tiny_pair()
    dgnam = DGNAM(gen, clf, ActMaxSettings(steps=15, lr_start=1.0), "cpu")
    targets = ["conv2:3@mean", "conv2:layer", f"conv2:dir={tmp_path}/v.txt@mean", f"conv2:dir={tmp_path}/v.txt",
               "fc8:prob=2"]
    result = dgnam.synthesize(targets, restarts=2)
    assert (result.act_best > result.act_start).all()
    alone = [dgnam.synthesize([t], restarts=2).codes_last for t in targets]  # batched equals one target at a time
    torch.testing.assert_close(result.codes_last, torch.cat(alone), atol=1e-5, rtol=1e-5)
    with pytest.raises(DGNError, match="needs neuron targets"):
        DGNAM(gen, clf, ActMaxSettings(steps=2, score="contrast"), "cpu").synthesize(["conv2:3@mean"])


def test_feature_anchor_by_hand():
    from dgn.objectives import FeatureAnchor

    reference = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    anchor = FeatureAnchor("fc", reference, weight=3.0)
    acts = {"fc": torch.tensor([[1.0, 3.0], [2.0, 0.0]])}
    # row 0: mean((0, 2)^2) = 2 over mean(1, 1) = 1 -> -6; row 1: unchanged -> 0
    torch.testing.assert_close(anchor(acts), torch.tensor([-6.0, 0.0]))
    # relative: the same change on a reference ten times larger costs a hundred times less
    torch.testing.assert_close(FeatureAnchor("fc", 10 * reference)({"fc": 10 * reference + acts["fc"] - reference}),
                               torch.tensor([-0.02, 0.0]))


def test_class_probability_values_by_hand():
    from dgn.objectives import TargetValues

    fc = torch.tensor([[1.0, 2.0, 0.0]])
    conv = torch.tensor([[[[0.0, 1.0]], [[1.0, 1.0]]]])  # (1, 2 channels, 1, 2)
    rows = [Target("fc", 1, kind="prob"), Target("conv", 0, (0, 1), "prob"), Target("conv", 0, None, "prob", True)]
    acts = {"fc": fc.repeat(3, 1), "conv": conv.repeat(3, 1, 1, 1)}
    e = torch.exp(torch.tensor(1.0))
    expected = torch.tensor([float(torch.softmax(fc[0], 0)[1]), 0.5, float((1 / (1 + e) + 0.5) / 2)])
    torch.testing.assert_close(TargetValues(rows).gather(acts), expected)

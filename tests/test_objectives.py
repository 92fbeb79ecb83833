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

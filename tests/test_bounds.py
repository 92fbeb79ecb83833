import torch

from dgn import spaces
from dgn.bounds import activation_stats, bounds_from_stats, write_bounds
from dgn.weights import load_bounds_file
from tests.tiny import tiny_pair


def test_bounds_are_round_mean_plus_k_std_of_post_relu_activations(tmp_path):
    _, clf = tiny_pair()
    images = torch.rand(10, 3, 36, 36)
    mean, std, count = activation_stats(clf, "fc6", [images[:4], images[4:]])
    x = spaces.convert(images, spaces.RGB01, clf.space)
    a = clf.module[:7](x).clamp_min(0).double()  # up to fc6, then ReLU
    assert count == 10
    torch.testing.assert_close(mean, a.mean(0).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std, a.std(0, unbiased=False).float(), rtol=1e-4, atol=1e-5)
    bounds = bounds_from_stats(mean, std, k=3)
    assert torch.equal(bounds, torch.round(mean + 3 * std).clamp_min(0))
    write_bounds(tmp_path / "b.txt", bounds)
    assert torch.equal(load_bounds_file(tmp_path / "b.txt", 32), bounds)
    assert (tmp_path / "b.txt").read_text().count("\n") == 1


def test_the_original_3x_fc6_file_reads_as_4096_integer_bounds(fixtures_dir):
    bounds = load_bounds_file(fixtures_dir / "dgn_am_upstream/act_range/3x/fc6.txt", 4096)
    assert bounds.min() == 3 and bounds.max() == 17 and bounds.median() == 12

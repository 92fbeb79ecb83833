"""Scorers of evolving images: the scores file of the closed loop, black-box answers, simulated noise."""

import numpy as np
import pytest
import torch

from dgn.errors import DGNError
from dgn.scorers import (
    CallableScorer,
    FileScorer,
    Noise,
    answer_generation,
    pending_generations,
    read_scores,
    write_generation,
)
from dgn.targets import Target

IDS = ["a-g0000-000", "a-g0000-001", "b-g0000-000"]


def _scores(tmp_path, text):
    path = tmp_path / "scores.csv"
    path.write_text(text)
    return path


def test_repeated_presentations_are_averaged_and_a_header_is_allowed(tmp_path):
    path = _scores(tmp_path, "image_id,score,repeat\na-g0000-000,1.0,0\nb-g0000-000,4\na-g0000-001,2\n"
                             "a-g0000-000,3.0,1\n")
    assert read_scores(path, IDS).tolist() == [2.0, 2.0, 4.0]


@pytest.mark.parametrize("text, message", [
    ("a-g0000-000,1\na-g0000-001,2\n", "no score for 1 of 3 images (b-g0000-000)"),
    ("a-g0000-000,1\na-g0000-001,nan\nb-g0000-000,1\n", "line 2: score 'nan' is not finite"),
    ("a-g0000-000,1\na-g0000-001,high\nb-g0000-000,1\n", "line 2: score 'high' is not a number"),
    ("a-g0000-000,1\nzzz,2\n", "line 2: unknown image id 'zzz'"),
    ("a-g0000-000\n", "line 1: expected image_id,score[,repeat]"),
])
def test_bad_scores_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(DGNError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")) as err:
        read_scores(_scores(tmp_path, text), IDS)
    assert "\n" not in str(err.value)


def test_a_generation_is_written_whole_and_answered_by_the_rig_side(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    write_generation(tmp_path, "run-g0000", images, IDS, ["rig:0", "rig:0", "rig:1"])
    assert [p.name for p in pending_generations(tmp_path)] == ["run-g0000"]
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind
    seen = {}

    def score(batch, entries):
        seen["images"] = batch
        return [float(b.mean()) for b in batch]

    answer_generation(tmp_path / "run-g0000", score)
    assert np.array_equal(seen["images"], images)  # the PNGs carry the exact pixels
    assert pending_generations(tmp_path) == []
    assert read_scores(tmp_path / "run-g0000" / "scores.csv", IDS).tolist() == pytest.approx(
        [float(i.mean()) for i in images])


def test_the_file_scorer_gives_up_after_its_timeout_with_a_clear_error(tmp_path):
    scorer = FileScorer(tmp_path, timeout=0.3, poll=0.05)
    images = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(DGNError, match="no scores for generation run-g0000 after 0.3 s"):
        scorer.score_rgb(images, ["x"], [Target("rig", 0)], "run-g0000")


def test_a_callable_may_answer_one_score_or_every_channel():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    targets = [Target("rig", 2), Target("rig", 0)]
    matrix = CallableScorer(lambda x: np.arange(8).reshape(2, 4))
    assert matrix.score_rgb(images, ["a", "b"], targets, "g").tolist() == [2.0, 4.0]
    assert CallableScorer(lambda x: [5, 6]).score_rgb(images, ["a", "b"], targets, "g").tolist() == [5.0, 6.0]
    with pytest.raises(DGNError, match="shape"):
        CallableScorer(lambda x: [1, 2, 3]).score_rgb(images, ["a", "b"], targets, "g")
    with pytest.raises(DGNError, match="NaN"):
        CallableScorer(lambda x: [1, float("nan")]).score_rgb(images, ["a", "b"], targets, "g")


def test_gaussian_noise_has_the_asked_signal_to_noise_ratio_per_row():
    clean = torch.stack([torch.linspace(0, 10, 2000), torch.linspace(0, 1, 2000)])
    noise = Noise("gaussian:2", [0, 1])
    noisy = noise(clean)
    added = noisy - clean
    for row in range(2):
        assert added[row].std().item() == pytest.approx(clean[row].std().item() / 2, rel=0.05)
    alone = Noise("gaussian:2", [1])(clean[1:])
    assert torch.equal(alone, noisy[1:])  # a row's draws do not depend on the others


def test_poisson_noise_counts_spikes():
    noisy = Noise("poisson:10", [0])(torch.tensor([[-1.0, 0.0, 5.0] * 500]))
    assert noisy.min() >= 0 and noisy[0, 0::3].max() == 0
    assert noisy[0, 2::3].mean().item() == pytest.approx(5.0, rel=0.05)


@pytest.mark.parametrize("spec", ["gaussian", "gaussian:-1", "uniform:1", "poisson:x"])
def test_bad_noise_is_a_one_line_error(spec):
    with pytest.raises(DGNError, match="gaussian:SNR or poisson:GAIN"):
        Noise(spec, [0])

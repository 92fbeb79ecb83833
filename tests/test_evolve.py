"""Black-box evolution: GA and CMA-ES raise units without gradients, rows batch like alone, a stopped run
resumes without losing or repeating a generation, and the closed loop through files survives a killed rig
and a killed run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dgn import weights
from dgn.cli import main
from dgn.errors import DGNError
from dgn.evolve import Evolution, EvolutionSettings
from dgn.models import load_classifier, load_generator
from dgn.scorers import CallableScorer
from dgn.synthesis import DGNAM
from tests.tiny import tiny_pair

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["fc8:0", "fc8:3", "conv2:1"]


@pytest.mark.parametrize("optimizer", ["ga", "cmaes"])
def test_evolution_raises_units_above_their_start_without_gradients(optimizer):
    g, c = tiny_pair()
    evolution = Evolution(g, c, EvolutionSettings(optimizer=optimizer, evaluations=600, population=20), "cpu")
    with torch.no_grad():  # nothing needs a gradient
        result = evolution.evolve(TARGETS)
    assert (result.act_best > result.act_start + 0.1).all(), (result.act_start, result.act_best)
    gradient = DGNAM(g, c, device="cpu").synthesize(TARGETS)  # act_max with gradients, same prior and box
    assert (result.act_best > 0.7 * gradient.act_best).all(), (result.act_best, gradient.act_best)
    assert result.history.shape == (3, 30, 2)
    assert (result.history[:, -1, 0] >= result.history[:, -1, 1]).all()  # best >= mean in every generation
    again = evolution.activations(result.codes_best, result.rows)
    torch.testing.assert_close(again, result.act_best)  # the recorded best is the saved code's score


@pytest.mark.parametrize("optimizer", ["ga", "cmaes"])
def test_rows_evolved_together_equal_each_row_evolved_alone(optimizer):
    g, c = tiny_pair()
    evolution = Evolution(g, c, EvolutionSettings(optimizer=optimizer, evaluations=160, population=16), "cpu")
    together = evolution.evolve(TARGETS, restarts=2, batch_size=6)
    alone = [evolution.evolve([t], restarts=2, batch_size=1) for t in TARGETS]
    torch.testing.assert_close(together.codes_best, torch.cat([a.codes_best for a in alone]))
    torch.testing.assert_close(together.act_best, torch.cat([a.act_best for a in alone]))
    assert not torch.equal(together.codes_best[0], together.codes_best[1])  # restarts differ


class Interrupt(Exception):
    pass


def test_a_stopped_batch_continues_from_its_checkpoint_to_the_same_result(tmp_path):
    g, c = tiny_pair()
    settings = EvolutionSettings(optimizer="cmaes", evaluations=8 * 12, population=8, noise="gaussian:1")
    whole = Evolution(g, c, settings, "cpu").evolve(TARGETS)
    scored = {"generations": 0}
    stopping = Evolution(g, c, settings, "cpu")
    score = stopping.score

    def score_then_stop(population, rows, name):
        scored["generations"] += 1
        if scored["generations"] == 7:
            raise Interrupt
        return score(population, rows, name)

    stopping.score = score_then_stop
    with pytest.raises(Interrupt):
        stopping.evolve(TARGETS, checkpoint=tmp_path, checkpoint_every=2)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    stopping.score = score
    resumed = stopping.evolve(TARGETS, checkpoint=tmp_path, checkpoint_every=2)
    assert torch.equal(resumed.codes_best, whole.codes_best) and torch.equal(resumed.history, whole.history)
    assert torch.equal(resumed.clean_best, whole.clean_best)
    assert not list(tmp_path.glob("*.safetensors"))  # a finished batch leaves no state


def test_noise_is_recorded_beside_the_clean_score(tmp_path):
    g, c = tiny_pair()
    noisy = Evolution(g, c, EvolutionSettings(evaluations=200, noise="gaussian:1"), "cpu").evolve(["fc8:0"])
    assert noisy.clean_best is not None and not torch.equal(noisy.clean_best, noisy.act_best)
    with pytest.raises(DGNError, match="model scorer"):
        Evolution(g, None, EvolutionSettings(noise="gaussian:1"), "cpu", CallableScorer(lambda x: x.mean((1, 2, 3))))


def test_a_callable_black_box_evolves_free_named_targets():
    g, _ = tiny_pair()
    redness = CallableScorer(lambda images: images[..., 0].astype(float).mean((1, 2)) -
                             images[..., 2].astype(float).mean((1, 2)))
    evolution = Evolution(g, None, EvolutionSettings(evaluations=300), "cpu", scorer=redness)
    result = evolution.evolve(["red:0"])
    assert result.rows[0].label == "red:0" and result.act_best[0] > result.act_start[0]
    assert result.history[0, -1, 1] > result.history[0, 0, 1] + 0.3  # the population grew redder (0..255 scale)


def test_dgn_evolve_writes_best_images_strips_plots_and_a_manifest(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["evolve", "--random-weights", "--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet",
                 "--target", "fc8:0-1", "--optimizer", "cmaes", "--evaluations", "80", "--population", "8",
                 "--strip-every", "4", "--device", "cpu", "--out", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["rows"]
    assert [r["target"] for r in rows] == ["fc8:0", "fc8:1"]
    assert rows[0]["evaluations"] == 80 and len(rows[0]["history_best"]) == 10
    assert manifest["config"]["optimizer"]["optimizer"] == "cmaes"
    for r in rows:
        slug = Path(r["image"]).stem
        assert (out / "evolution" / f"{slug}_strip.png").is_file() and (out / "evolution" / f"{slug}_scores.png").is_file()
    assert not (out / "state").exists() or not list((out / "state").iterdir())
    assert "wrote 2 rows' best images" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "de"], "invalid choice: 'de'"),
    (["--evaluations", "10"], "evaluations must be at least two generations"),
    (["--noise", "gaussian:0"], "gaussian:SNR or poisson:GAIN"),
    (["--loop-dir", "x"], "--loop-dir is for --scorer files"),
])
def test_bad_evolve_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    code = main(["evolve", "--random-weights", "--generator", "cifar-deepsim-fc6", "--classifier", "cifar-caffenet",
                 "--target", "fc8:0", "--device", "cpu", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


# ----- the closed loop with a simulated rig in another process ---------------------------------------------------
def _start(argv, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kwargs)


def _wait(condition, seconds=60.0):
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


LOOP_RUN = ["--generator", "cifar-deepsim-fc6", "--target", "rig:3", "--target", "rig:8", "--optimizer", "ga",
            "--population", "6", "--evaluations", "36", "--device", "cpu", "--scorer", "files", "--timeout", "120"]


def test_the_closed_loop_survives_a_killed_rig_and_a_killed_run(tmp_path):
    from tests.rig import rig_responses

    out, loop, log, stop = tmp_path / "run", tmp_path / "loop", tmp_path / "rig.log", tmp_path / "stop"
    run_argv = ["-m", "dgn", "evolve", *LOOP_RUN, "--loop-dir", str(loop), "--out", str(out)]
    rig = _start(["-m", "tests.rig", str(loop), str(log), "--die-at", "2"])  # crashes on seeing generation 2
    run = _start(run_argv)
    try:
        _wait(lambda: rig.poll() is not None)  # the rig died with generation 2 unanswered
        assert rig.returncode == 3
        shown = loop / "rig_0003_r00-n2-g0002"
        assert (shown / "images.json").exists() and not (shown / "scores.csv").exists()
        first_write = (shown / "images.json").stat().st_mtime_ns
        _wait(lambda: (out / "state").is_dir() and any((out / "state").iterdir()))
        run.send_signal(signal.SIGKILL)  # the run dies too, waiting for generation 2
        run.wait()
        rig = _start(["-m", "tests.rig", str(loop), str(log), "--stop-file", str(stop)])
        run = _start([*run_argv, "--resume"])
        assert run.wait(timeout=180) == 0, run.stdout.read().decode()
    finally:
        stop.touch()
        for process in (rig, run):
            if process.poll() is None:
                process.kill()
        rig.wait()
    answered = log.read_text().split()
    assert answered == [f"rig_0003_r00-n2-g{g:04d}" for g in range(6)]  # each generation once, in order
    assert (shown / "images.json").stat().st_mtime_ns == first_write  # the resumed run did not show it again
    # the same evolution in one process, with the rig's responses as a callable: the same codes
    g = load_generator("cifar-deepsim-fc6")
    classifier = load_classifier("cifar-caffenet")
    evolution = Evolution(g, None, EvolutionSettings(optimizer="ga", population=6, evaluations=36), "cpu",
                          CallableScorer(lambda images: rig_responses(images, classifier)))
    bounds, _ = weights.resolve_bounds(None, "cifar-deepsim-fc6", 512)  # the CLI's default box for this prior
    direct = evolution.evolve(["rig:3", "rig:8"], upper_bound=bounds)
    manifest = json.loads((out / "manifest.json").read_text())
    from safetensors.torch import load_file

    best = torch.stack([load_file(out / r["code"])["best"] for r in manifest["rows"]])
    torch.testing.assert_close(best, direct.codes_best)
    assert [r["act_best"] for r in manifest["rows"]] == pytest.approx(direct.act_best.tolist(), abs=1e-4)

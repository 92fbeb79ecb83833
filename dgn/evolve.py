"""Gradient-free evolution of generator codes (the XDream line): many units at once, each its own population.

A row (a target x restart) holds a population of codes; each generation every code is decoded by the
generator and scored by a scorer (:mod:`dgn.scorers`: a classifier's unit without gradients, any Python
callable, or a recording rig through files), and a population step rule (:mod:`dgn.evolvers`: XDream's
genetic algorithm or separable CMA-ES) proposes the next generation. The loop is the one engine's
(:func:`dgn.engine.optimise`); this module configures it, keeps per-generation records (best and mean
score, the best code every ``strip_every`` generations) and checkpoints the run between generations, so
a resumed run neither loses nor repeats a generation.

Codes stay in the prior's box (clipped to [lower, upper] after each generation, no decay), as DGN-AM's.
A row's draws come from its own random streams, so a batch of rows gives each row's result alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from dgn import spaces
from dgn.engine import BoxDecay, IterateTracker, Problem, optimise, resolve_device
from dgn.errors import PRECISIONS, DGNError, check_at_least, check_choice
from dgn.evolvers import OPTIMIZERS, Genetic, SeparableCMAES, initial_population
from dgn.files import atomic_write_bytes
from dgn.models import Classifier, Generator, input_shape, model_record
from dgn.params import render_codes, upper_bound_tensor
from dgn.placement import place
from dgn.receptive import ReceptiveFields, generator_view_box
from dgn.render import line_plot, montage, save_png, to_uint8
from dgn.rows import Row, RowsResult, TargetPlanner, plan_rows, run_in_chunks
from dgn.scorers import ModelScorer, Noise
from dgn.targets import Target, as_target

Tensor = torch.Tensor
DEFAULT_POPULATION = {"ga": 20, "cmaes": 40}  # XDream's; Animadversio's CMA-ES runs on fc6 codes


@dataclass(frozen=True)
class EvolutionSettings:
    """Hyper-parameters of an evolution run.

    Attributes:
        optimizer: "ga" (XDream's genetic algorithm) or "cmaes" (separable CMA-ES).
        evaluations: scored images per row (the budget); generations = evaluations // population.
        population: codes per row and generation (None: 20 for ga, 40 for cmaes).
        mutation_rate, mutation_size, selectivity, heritability, elites: the genetic algorithm's
            (``dgn.evolvers.Genetic``; XDream's defaults, one elite).
        sigma: CMA-ES's initial step size in code units (None: a quarter of the mean upper bound, i.e. 3 on
            the ImageNet fc6 prior's box of median 12, as Animadversio's 2-3).
        lower_bound: codes are clipped below at this (None: no lower bound); the upper bounds are the run's.
        fit_mode, post_relu, stop_early: how the model scorer sees the images (as DGN-AM's settings).
        precision: "fp32" or "bf16" (autocast on bf16 copies of the generator's and the model scorer's
            weights; see ``dgn.placement``).
        noise: "gaussian:SNR" or "poisson:GAIN" on the model scorer's scores (see ``dgn.scorers.Noise``).
        strip_every: keep each row's best code every this many generations (the evolution strip).
        score_batch: images decoded and scored at once (memory vs speed).
        display: how a black-box scorer sees the generator's images ("mean": true colours; see ``dgn.render``).
    """

    optimizer: str = "ga"
    evaluations: int = 10_000
    population: int | None = None
    mutation_rate: float = 0.5
    mutation_size: float = 0.5
    selectivity: float = 2.0
    heritability: float = 0.5
    elites: int = 1
    sigma: float | None = None
    lower_bound: float | None = 0.0
    fit_mode: str = "auto"
    post_relu: bool = False
    stop_early: bool = True
    precision: str = "fp32"
    noise: str | None = None
    strip_every: int = 10
    score_batch: int = 256
    display: str = "mean"

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("precision", self.precision, PRECISIONS)
        check_at_least("strip_every", self.strip_every, 1)
        check_at_least("score_batch", self.score_batch, 1)
        if self.evaluations < 2 * self.population_size:
            raise DGNError(f"evaluations must be at least two generations ({2 * self.population_size} images with a "
                           f"population of {self.population_size}), got {self.evaluations}")

    @property
    def population_size(self) -> int:
        return self.population if self.population is not None else DEFAULT_POPULATION[self.optimizer]

    @property
    def generations(self) -> int:
        return self.evaluations // self.population_size


@dataclass
class EvolutionResult(RowsResult):
    """Rows' results (``codes_last``: each row's best code of the last generation; ``codes_best``: the best code
    ever scored) with each generation's best and mean score (``history``: rows x generations x 2) and the
    best code every ``strip_every`` generations (``strip_codes``: rows x len(strip_steps) x code)."""

    history: Tensor = field(default_factory=lambda: torch.zeros(0, 0, 2))
    strip_steps: list[int] = field(default_factory=list)
    strip_codes: Tensor = field(default_factory=lambda: torch.zeros(0))
    population: int = 0
    clean_end: Tensor | None = None  # without the scorer's noise, when it has some
    clean_best: Tensor | None = None

    def row_extra(self, index: int) -> dict:
        extra = {"generations": int(self.history.shape[1]), "population": self.population,
                 "evaluations": int(self.history.shape[1]) * self.population,
                 "history_best": [round(float(v), 6) for v in self.history[index, :, 0]],
                 "history_mean": [round(float(v), 6) for v in self.history[index, :, 1]]}
        if self.clean_end is not None and self.clean_best is not None:
            extra.update(act_end_clean=float(self.clean_end[index]), act_best_clean=float(self.clean_best[index]))
        return extra

    @staticmethod
    def concat(parts: Sequence[EvolutionResult]) -> EvolutionResult:
        base = RowsResult.concat(parts)
        cleans = [p.clean_end for p in parts]
        return EvolutionResult(
            **{k: getattr(base, k) for k in RowsResult.__dataclass_fields__},
            history=torch.cat([p.history for p in parts]), strip_steps=parts[0].strip_steps,
            strip_codes=torch.cat([p.strip_codes for p in parts]), population=parts[0].population,
            clean_end=torch.cat(cleans) if all(c is not None for c in cleans) else None,  # type: ignore[arg-type]
            clean_best=torch.cat([p.clean_best for p in parts]) if all(c is not None for c in cleans) else None,  # type: ignore[misc]
        )


class Evolution(TargetPlanner):
    """Evolve generator codes to maximise units that may be scored without gradients.

    Args:
        generator: the image prior.
        classifier: the network whose units are the targets (the default scorer); None with a black-box
            ``scorer``, whose targets are then free names ``NAME:UNIT`` (UNIT picks a channel of a scorer
            that answers several).
        settings: see :class:`EvolutionSettings`.
        device: "auto", "cpu", "cuda", ...
        scorer: a :class:`dgn.scorers.CallableScorer` or :class:`dgn.scorers.FileScorer` (default: the
            classifier's units, :class:`dgn.scorers.ModelScorer`).

    Example::

        evolution = Evolution(load_generator("deepsim-fc6"), load_classifier("caffenet"),
                              EvolutionSettings(optimizer="cmaes", evaluations=4000))
        result = evolution.evolve(["fc8:1", "fc8:2"])
    """

    def __init__(self, generator: Generator, classifier: Classifier | None = None,
                 settings: EvolutionSettings | None = None, device: str | torch.device | None = "auto",
                 scorer: object | None = None) -> None:
        self.settings = settings or EvolutionSettings()
        self.device = resolve_device(device)
        if classifier is None and scorer is None:
            raise DGNError("evolution needs a classifier (its units are scored) or a black-box scorer")
        s = self.settings
        self.generator = replace(generator, module=place(generator.module, self.device, s.precision))
        self.classifier = None  # type: ignore[assignment]
        if classifier is not None:
            classifier = self.classifier = replace(classifier, module=place(classifier.module, self.device, s.precision))
            self._receptive_fields = ReceptiveFields(classifier.module, input_shape(classifier))
        self.scorer = scorer if scorer is not None else ModelScorer(classifier, s.fit_mode, s.post_relu, s.stop_early)
        if s.noise is not None and not isinstance(self.scorer, ModelScorer):
            raise DGNError("--noise simulates a recorded unit on the model scorer; a black box brings its own noise")

    # ----- rows ----------------------------------------------------------------------------------
    def plan(self, targets: Sequence[str | Target], restarts: int = 1, seed: int = 0) -> list[Row]:
        """One row per (target, restart); with a classifier the targets are checked against it."""
        if self.classifier is not None:
            return super().plan(targets, restarts, seed)
        if not targets:
            raise DGNError("no targets given; write at least one, e.g. rig:0")
        return plan_rows([as_target(t) for t in targets], [str(t) for t in targets], restarts, seed)

    def box(self, upper_bound: float | Tensor | None) -> BoxDecay:
        """The code box: [lower bound, upper bound] (None: the generator's default bound), no decay."""
        bound = upper_bound if upper_bound is not None else self.generator.default_upper_bound
        upper = upper_bound_tensor(bound, self.generator.code_shape)
        return BoxDecay(self.settings.lower_bound, upper.to(self.device) if upper is not None else None, 1.0)

    def step_rule(self, rows: Sequence[Row], box: BoxDecay) -> Genetic | SeparableCMAES:
        """The population step rule of the settings for ``rows``."""
        s, seeds = self.settings, [r.seed for r in rows]
        if s.optimizer == "ga":
            return Genetic(seeds, s.population_size, s.mutation_rate, s.mutation_size, s.selectivity,
                           s.heritability, s.elites)
        sigma = s.sigma
        if sigma is None:
            upper = box.upper if box.upper is not None else torch.tensor(self.generator.default_upper_bound)
            sigma = 0.25 * float(upper.float().mean())
        mean = box(initial_population(seeds, 1, self.generator.code_shape)[:, 0].to(self.device))
        return SeparableCMAES(seeds, mean, s.population_size, sigma)

    # ----- scoring -------------------------------------------------------------------------------
    def score(self, population: Tensor, rows: Sequence[Row], name: str) -> Tensor:
        """Clean scores (rows, P) of every code of ``population`` (rows, P, *code_shape) for its row's target."""
        n_rows, size = population.shape[:2]
        flat = population.reshape(n_rows * size, *population.shape[2:])
        targets = [rows[i // size].target for i in range(flat.shape[0])]
        step, g = self.settings.score_batch, self.generator
        chunks = [slice(i, i + step) for i in range(0, flat.shape[0], step)]
        if isinstance(self.scorer, ModelScorer):
            scores = torch.cat([self.scorer.score_images(g(flat[c]), g.space, targets[c]).float().cpu() for c in chunks])
        else:
            rgb = np.concatenate([(spaces.display_rgb01(g(flat[c]).float(), g.space, self.settings.display)
                                   .permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8) for c in chunks])
            ids = [f"{rows[i // size].slug}-{name.rsplit('-', 1)[-1]}-{i % size:03d}" for i in range(flat.shape[0])]
            scores = self.scorer.score_rgb(rgb, ids, targets, name).float()  # type: ignore[attr-defined]
        return scores.view(n_rows, size)

    @torch.no_grad()
    def activations(self, codes: Tensor, rows: Sequence[Row]) -> Tensor:
        """Each row's clean score for one code per row (B, *code_shape), e.g. to re-check saved codes."""
        return self.score(codes.to(self.device)[:, None], rows, "check")[:, 0]

    # ----- the run -------------------------------------------------------------------------------
    def optimise(self, rows: Sequence[Row], upper_bound: float | Tensor | None = None,
                 progress: Callable[[int], None] | None = None, checkpoint: str | Path | None = None,
                 checkpoint_every: int = 1) -> EvolutionResult:
        """Evolve ``rows`` as one batch for the settings' generations.

        Args:
            rows: the rows (see :meth:`plan`).
            upper_bound: scalar or per-code-unit upper bounds (None: the generator's default).
            progress: called after each generation with the number of rows it advanced.
            checkpoint: a folder where the batch's state is saved every ``checkpoint_every`` generations
                (and found again: the batch continues from it); removed when the batch ends.
        """
        s = self.settings
        generations, size = s.generations, s.population_size
        box = self.box(upper_bound)
        rule = self.step_rule(rows, box)
        noise = Noise(s.noise, [r.seed for r in rows]) if s.noise else None
        batch_name = f"{rows[0].slug}-n{len(rows)}"
        strip_steps = sorted({*range(0, generations, s.strip_every), generations - 1})
        history = torch.full((len(rows), generations, 2), math.nan)
        strip = torch.zeros(len(rows), len(strip_steps), *self.generator.code_shape)
        generation = 0

        def scores_of(population: Tensor) -> dict[str, Tensor]:
            clean = self.score(population, rows, f"{batch_name}-g{generation:04d}")
            return {"scores": (noise(clean) if noise is not None else clean).to(population.device).flatten()}

        def note(step: int, population: Tensor, scores: Tensor) -> None:
            finite = torch.nan_to_num(scores.float().cpu(), nan=-math.inf)
            history[:, step, 0] = finite.max(1).values
            history[:, step, 1] = scores.float().cpu().nanmean(1)
            if step in strip_steps:
                best = finite.argmax(1)
                strip[:, strip_steps.index(step)] = population[torch.arange(len(rows)), best].float().cpu()

        x = box(rule.start(self.generator.code_shape).to(self.device))
        track: IterateTracker | None = None
        state_file = Path(checkpoint) / f"{batch_name}.safetensors" if checkpoint is not None else None
        if state_file is not None and state_file.exists():
            generation, x, track = self._load_state(state_file, rows, rule, noise, history, strip)
        problem = Problem(start=x, image=lambda codes: codes, forward=scores_of,
                          objective=lambda acts, params: acts["scores"], step=rule, project=box, observe=note)
        while generation < generations:
            if state_file is not None and generation % checkpoint_every == 0 and track is not None:
                self._save_state(state_file, rows, generation, x, rule, noise, track, history, strip)
            last = generation == generations - 1
            track = optimise(replace(problem, start=x), 1, s.precision, progress, tracker=track,
                             first_step=generation, evaluate_last=last)
            x = track.params
            generation += 1
        assert track is not None
        clean_end = clean_best = None
        if noise is not None:
            with torch.no_grad():
                clean_end, clean_best = self.activations(track.last, rows), self.activations(track.best, rows)
        if state_file is not None and state_file.exists():
            state_file.unlink()
        return EvolutionResult(list(rows), track.last.cpu(), track.best.cpu(), track.act_start.cpu(),
                               track.act_end.cpu(), track.act_best.cpu(), track.best_step.cpu(),
                               [self.view_box(r.target) for r in rows], history=history, strip_steps=strip_steps,
                               strip_codes=strip, population=size, clean_end=clean_end, clean_best=clean_best)

    _TRACKED = ("last", "best", "act_start", "act_end", "act_best", "best_step", "active")

    def _save_state(self, path: Path, rows: Sequence[Row], generation: int, x: Tensor, rule, noise: Noise | None,
                    track: IterateTracker, history: Tensor, strip: Tensor) -> None:
        tensors = {"population": x.cpu(), "history": history, "strip": strip,
                   **{f"rule.{k}": v for k, v in rule.state().items()},
                   **{f"track.{k}": getattr(track, k).cpu() for k in self._TRACKED},
                   **({f"noise.{k}": v for k, v in noise.state().items()} if noise is not None else {})}
        metadata = {"generation": str(generation), "rows": ",".join(r.key for r in rows)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, safetensors_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))

    def _load_state(self, path: Path, rows: Sequence[Row], rule, noise: Noise | None, history: Tensor,
                    strip: Tensor) -> tuple[int, Tensor, IterateTracker]:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        if metadata.get("rows") != ",".join(r.key for r in rows):
            raise DGNError(f"{path} holds the state of other rows; remove it to start this batch afresh")
        tensors = load_file(str(path))
        pick = lambda prefix: {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        rule.load_state(pick("rule."))
        if noise is not None:
            noise.load_state(pick("noise."))
        history.copy_(tensors["history"])
        strip.copy_(tensors["strip"])
        tracked = pick("track.")
        track = IterateTracker(*(tracked[k].to(self.device) for k in self._TRACKED))
        return int(metadata["generation"]), tensors["population"].to(self.device), track

    def evolve(
        self,
        targets: Sequence[str | Target],
        restarts: int = 1,
        seed: int = 0,
        batch_size: int = 16,
        upper_bound: float | Tensor | None = None,
        skip: Iterable[str] = (),
        on_chunk: Callable[[RowsResult], None] | None = None,
        progress: Callable[[int], None] | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
    ) -> EvolutionResult | None:
        """Evolve every (target, restart) row, ``batch_size`` rows at a time (results do not depend on it).

        Args: as :meth:`dgn.synthesis.DGNAM.synthesize`; ``checkpoint`` and ``checkpoint_every`` as
        :meth:`optimise`. Returns all rows' results in order, or None when every row was skipped.
        """
        skip = set(skip)
        rows = [r for r in self.plan(targets, restarts, seed) if r.key not in skip]
        parts = run_in_chunks(rows, batch_size, lambda chunk: self.optimise(chunk, upper_bound, progress, checkpoint,
                                                                             checkpoint_every), on_chunk)
        return EvolutionResult.concat(parts) if parts else None  # type: ignore[arg-type]

    # ----- images --------------------------------------------------------------------------------
    @property
    def output_space(self) -> spaces.PixelSpace:
        return self.generator.space

    def view_box(self, target: Target) -> tuple[int, int, int, int]:
        """The region of the generator image the classifier sees (a spatial unit's receptive field in it);
        all of it for a black-box scorer."""
        size = self.generator.space.size or (0, 0)
        if self.classifier is None:
            return 0, 0, size[0], size[1]
        return generator_view_box(size, self.classifier.space.size, self.settings.fit_mode, target.layer,
                                  target.position, self._receptive_fields)

    def render(self, codes: Tensor, boxes: Sequence[tuple[int, int, int, int]], batch_size: int = 16) -> list[Tensor]:
        """Generator images of ``codes``, each cropped to its box."""
        return render_codes(self.generator, codes, boxes, self.device, batch_size)

    def describe(self) -> dict:
        """The configuration, for a manifest."""
        s = self.settings
        rule = (Genetic([0], s.population_size, s.mutation_rate, s.mutation_size, s.selectivity, s.heritability,
                        s.elites).describe() if s.optimizer == "ga" else
                {"optimizer": "cmaes", "variant": "separable (diagonal covariance)", "population": s.population_size})
        return {
            "method": "evolution",
            "generator": model_record(self.generator),
            "classifier": model_record(self.classifier) if self.classifier is not None else None,
            "scorer": self.scorer.describe() if hasattr(self.scorer, "describe") else type(self.scorer).__name__,
            "optimizer": rule,
            "settings": asdict(s),
            "generations": s.generations,
            "device": str(self.device),
        }


def write_evolution_figures(out_dir: str | Path, part: EvolutionResult, method: Evolution, display: str = "act_max",
                            tile: int = 96) -> list[str]:
    """Per row: ``evolution/<row>_strip.png`` (the best image every ``strip_every`` generations, with its score)
    and ``evolution/<row>_scores.png`` (best and mean score per generation against images scored).

    Returns the files written, relative to ``out_dir``.
    """
    out, written = Path(out_dir), []
    evaluations = [(g + 1) * part.population for g in range(part.history.shape[1])]
    for i, row in enumerate(part.rows):
        box = part.view_boxes[i]
        images = method.render(part.strip_codes[i], [box] * len(part.strip_steps))
        labels = [f"g{g}: {float(part.history[i, g, 0]):.3g}" for g in part.strip_steps]
        strip = montage([to_uint8(im, method.output_space, display) for im in images], labels,
                        columns=len(images), tile=tile)
        plot = line_plot({"best": (evaluations, part.history[i, :, 0].tolist()),
                          "mean": (evaluations, part.history[i, :, 1].tolist())},
                         title=f"{row.label} r{row.restart}", x_label="images scored")
        for name, array in ((f"evolution/{row.slug}_strip.png", strip), (f"evolution/{row.slug}_scores.png", plot)):
            save_png(out / name, array)
            written.append(name)
    return written

"""Gradient-free step rules over generator codes: XDream's genetic algorithm and separable CMA-ES.

A population step rule holds, for each row (a target x restart), a population of P candidate codes: the
engine (:func:`dgn.engine.optimise`) scores every candidate, hands the scores (rows, P) to ``tell`` and
gets the next population. Each row draws from its own random generator, seeded from the row's seed, so
a row evolves the same alone as in a batch of rows. Draws happen on the CPU (the same on every device).

- :class:`Genetic`: the genetic algorithm of XDream (Xiao & Kreiman 2020, PLOS Comput. Biol.; the
  optimiser of Ponce et al. 2019, Cell), with its published defaults: population 20, mutation rate 0.5,
  mutation size 0.5, selectivity 2, heritability 0.5; fitness a softmax of the scores at temperature
  std(scores) / selectivity after clipping at the 95th percentile, fitness-proportional choice of two
  parents, uniform crossover (a share ``heritability`` of the genes from the first), then Gaussian
  mutation of a share ``mutation_rate`` of the genes. ``elites`` best codes pass unchanged (XDream's
  ``n_conserve``; its in-silico tests use 0, its recording demos 1; our default 1).
- :class:`SeparableCMAES`: CMA-ES with a diagonal covariance (Ros & Hansen 2008, "A simple modification
  in CMA-ES achieving linear time and space complexity"), the standard weights and learning rates of
  Hansen's tutorial (2016) with sep-CMA's (n + 2) / 3 speed-up of the covariance rates. O(n) per
  candidate, so it suits 4,096-d codes and many rows at once. Candidates are clipped into the code box
  before scoring; the update uses the unclipped draws.

Both keep their state in tensors (:meth:`state` / :meth:`load_state`) so a run can stop after any
generation and resume without losing or repeating one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dgn.errors import DGNError

Tensor = torch.Tensor
OPTIMIZERS = ("ga", "cmaes")


def row_generators(seeds: Sequence[int], salt: int = 0) -> list[torch.Generator]:
    """One CPU random generator per row, seeded from the row's seed (and a salt naming the stream)."""
    return [torch.Generator().manual_seed(int(seed) * 1_000_003 + salt) for seed in seeds]


def _generator_states(generators: Sequence[torch.Generator]) -> Tensor:
    return torch.stack([g.get_state() for g in generators])


def _set_generator_states(generators: Sequence[torch.Generator], states: Tensor) -> None:
    for g, state in zip(generators, states):
        g.set_state(state.clone())


def initial_population(seeds: Sequence[int], population: int, code_shape: Sequence[int]) -> Tensor:
    """Each row's first population (rows, P, *code_shape): N(0, 1) codes drawn as act_max draws one start
    (``np.random.RandomState(seed).normal``; float64 on the CPU, the same on every device)."""
    draws = [np.random.RandomState(seed).normal(0, 1, (population, *code_shape)) for seed in seeds]
    return torch.from_numpy(np.stack(draws)).float()


@dataclass
class Genetic:
    """XDream's genetic algorithm, batched over rows (see the module docstring for the rule).

    Args:
        seeds: one per row (its random stream).
        population: codes per row and generation.
        mutation_rate, mutation_size: share of genes mutated, and the mutation's standard deviation.
        selectivity: selection pressure (higher: fitter parents more likely).
        heritability: share of genes from the first parent (0.5..1).
        elites: best codes kept unchanged each generation.
    """

    seeds: Sequence[int]
    population: int = 20
    mutation_rate: float = 0.5
    mutation_size: float = 0.5
    selectivity: float = 2.0
    heritability: float = 0.5
    elites: int = 1

    gradient_free = True  # the engine scores candidates instead of following a gradient

    def __post_init__(self) -> None:
        if self.population < 2:
            raise DGNError(f"population must be >= 2, got {self.population}")
        if not 0 <= self.mutation_rate <= 1 or self.mutation_size <= 0 or self.selectivity <= 0:
            raise DGNError("mutation rate must be in [0, 1], mutation size and selectivity > 0")
        if not 0.5 <= self.heritability <= 1:
            raise DGNError(f"heritability must be in [0.5, 1], got {self.heritability}")
        if not 0 <= self.elites < self.population:
            raise DGNError(f"elites must be in [0, population), got {self.elites}")
        self.generators = row_generators(self.seeds, salt=1)

    def start(self, code_shape: Sequence[int]) -> Tensor:
        """The first population of every row (rows, P, *code_shape)."""
        return initial_population(self.seeds, self.population, code_shape)

    def tell(self, population: Tensor, scores: Tensor) -> Tensor:
        """The next population from this one (rows, P, ...) and its scores (rows, P); NaN scores lose."""
        out = torch.empty_like(population)
        for row, g in enumerate(self.generators):
            out[row] = self._next(population[row].cpu(), scores[row].detach().float().cpu(), g).to(out.device)
        return out

    def _next(self, codes: Tensor, scores: Tensor, g: torch.Generator) -> Tensor:
        scores = torch.nan_to_num(scores, nan=-math.inf)
        order = torch.argsort(scores, descending=True, stable=True)
        ranked, codes = scores[order], codes[order]
        finite = ranked[torch.isfinite(ranked)]
        if finite.numel() == 0:
            fitness = torch.ones_like(ranked)
        else:
            temperature = max(float(finite.std(unbiased=False)) / self.selectivity, 1e-8)
            clipped = ranked.clamp(max=float(torch.quantile(finite.double(), 0.95)))
            fitness = torch.exp((clipped - clipped[0]) / temperature).nan_to_num(0.0)
        children = self.population - self.elites
        bins = torch.cumsum(fitness.double(), 0)
        bins = bins / bins[-1]
        u = torch.rand(2, children, generator=g, dtype=torch.float64)
        parents = torch.searchsorted(bins, u, right=True).clamp(max=len(bins) - 1)
        genes = codes[0].numel()
        from_first = torch.rand(children, genes, generator=g) < self.heritability
        first, second = codes.flatten(1)[parents[0]], codes.flatten(1)[parents[1]]
        child = torch.where(from_first, first, second)
        mutate = torch.rand(children, genes, generator=g) < self.mutation_rate
        child = child + mutate * torch.randn(children, genes, generator=g) * self.mutation_size
        return torch.cat([codes[: self.elites], child.view(children, *codes.shape[1:])])

    def state(self) -> dict[str, Tensor]:
        return {"generators": _generator_states(self.generators)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        _set_generator_states(self.generators, state["generators"])

    def describe(self) -> dict:
        return {"optimizer": "ga", "population": self.population, "mutation_rate": self.mutation_rate,
                "mutation_size": self.mutation_size, "selectivity": self.selectivity,
                "heritability": self.heritability, "elites": self.elites}


class SeparableCMAES:
    """CMA-ES with a diagonal covariance (sep-CMA-ES), batched over rows: each row its own mean, step size,
    variances and evolution paths (see the module docstring).

    Args:
        seeds: one per row (its random stream).
        population: candidates per row and generation (lambda).
        sigma: the initial step size (in code units).
        mean: (rows, *code_shape) initial means.
    """

    gradient_free = True

    def __init__(self, seeds: Sequence[int], mean: Tensor, population: int = 40, sigma: float = 1.0) -> None:
        if population < 4:
            raise DGNError(f"CMA-ES needs a population of at least 4, got {population}")
        if sigma <= 0:
            raise DGNError(f"sigma must be > 0, got {sigma}")
        self.seeds, self.population, self.sigma0 = list(seeds), population, sigma
        self.generators = row_generators(self.seeds, salt=2)
        rows, n = mean.shape[0], mean[0].numel()
        self.code_shape = tuple(mean.shape[1:])
        self.n = n
        mu = population // 2
        w = torch.log(torch.tensor(mu + 0.5, dtype=torch.float64)) - torch.log(torch.arange(1, mu + 1, dtype=torch.float64))
        self.weights = (w / w.sum()).float()
        mu_eff = float(1 / (self.weights.double() ** 2).sum())
        self.mu, self.mu_eff = mu, mu_eff
        self.c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
        self.d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + self.c_sigma
        self.c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
        c_1 = 2 / ((n + 1.3) ** 2 + mu_eff)
        c_mu = min(1 - c_1, 2 * (mu_eff - 2 + 1 / mu_eff) / ((n + 2) ** 2 + mu_eff))
        speed = (n + 2) / 3  # sep-CMA's faster learning of a diagonal covariance
        self.c_1 = min(1.0, c_1 * speed)
        self.c_mu = min(1 - self.c_1, c_mu * speed)
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.mean = mean.detach().float().cpu().reshape(rows, n).clone()
        self.step_size = torch.full((rows,), float(sigma))
        self.variances = torch.ones(rows, n)
        self.path_sigma = torch.zeros(rows, n)
        self.path_c = torch.zeros(rows, n)
        self.generation = torch.zeros(rows)
        self.z = torch.zeros(rows, population, n)

    def start(self, code_shape: Sequence[int] | None = None) -> Tensor:
        """The first population: draws around the initial means."""
        return self._sample()

    def _sample(self) -> Tensor:
        rows = self.mean.shape[0]
        self.z = torch.stack([torch.randn(self.population, self.n, generator=g) for g in self.generators])
        y = self.variances.sqrt()[:, None] * self.z
        x = self.mean[:, None] + self.step_size[:, None, None] * y
        return x.view(rows, self.population, *self.code_shape)

    def tell(self, population: Tensor, scores: Tensor) -> Tensor:
        """Update every row's distribution from the scores (rows, P) of the last draws; the next draws."""
        scores = torch.nan_to_num(scores.detach().float().cpu(), nan=-math.inf)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, : self.mu]
        z_sel = torch.gather(self.z, 1, order[:, :, None].expand(-1, -1, self.n))
        z_w = (self.weights[None, :, None] * z_sel).sum(1)
        std = self.variances.sqrt()
        y_w = std * z_w
        self.mean = self.mean + self.step_size[:, None] * y_w
        cs, cc = self.c_sigma, self.c_c
        self.path_sigma = (1 - cs) * self.path_sigma + math.sqrt(cs * (2 - cs) * self.mu_eff) * z_w
        self.generation += 1
        norm = self.path_sigma.norm(dim=1)
        h_sigma = (norm / torch.sqrt(1 - (1 - cs) ** (2 * self.generation)) < (1.4 + 2 / (self.n + 1)) * self.chi_n).float()
        self.path_c = (1 - cc) * self.path_c + h_sigma[:, None] * math.sqrt(cc * (2 - cc) * self.mu_eff) * y_w
        y_sel = std[:, None] * z_sel
        rank_mu = (self.weights[None, :, None] * y_sel.pow(2)).sum(1)
        correction = ((1 - h_sigma) * cc * (2 - cc))[:, None] * self.variances
        self.variances = ((1 - self.c_1 - self.c_mu) * self.variances
                          + self.c_1 * (self.path_c.pow(2) + correction) + self.c_mu * rank_mu)
        self.step_size = self.step_size * torch.exp((cs / self.d_sigma) * (norm / self.chi_n - 1))
        return self._sample().to(population.device)

    _STATE = ("mean", "step_size", "variances", "path_sigma", "path_c", "generation", "z")

    def state(self) -> dict[str, Tensor]:
        return {**{k: getattr(self, k) for k in self._STATE}, "generators": _generator_states(self.generators)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        for k in self._STATE:
            setattr(self, k, state[k].clone())
        _set_generator_states(self.generators, state["generators"])

    def describe(self) -> dict:
        return {"optimizer": "cmaes", "variant": "separable (diagonal covariance)", "population": self.population,
                "sigma0": self.sigma0, "mu": self.mu}

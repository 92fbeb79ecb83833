"""The population step rules: XDream's genetic algorithm and separable CMA-ES, on known functions."""

import math

import pytest
import torch

from dgn.errors import DGNError
from dgn.evolvers import Genetic, SeparableCMAES, initial_population


def test_the_first_population_is_act_max_s_draw_per_seed():
    import numpy as np

    pop = initial_population([7, 8], 5, (3,))
    assert pop.shape == (2, 5, 3)
    assert torch.equal(pop[1], torch.from_numpy(np.random.RandomState(8).normal(0, 1, (5, 3))).float())


def test_ga_keeps_its_elites_and_breeds_from_the_fittest():
    ga = Genetic([0], population=10, mutation_rate=0.0, heritability=1.0, selectivity=1e6, elites=2)
    population = torch.arange(10, dtype=torch.float32).view(1, 10, 1).expand(1, 10, 4).clone()
    scores = torch.arange(10, dtype=torch.float32)[None]  # code k scores k: code 9 is the best
    nxt = ga.tell(population, scores)
    assert torch.equal(nxt[0, :2], population[0, [9, 8]])  # elites first, best first, unchanged
    # no mutation, one parent's genes only, near-infinite selectivity: the children are copies of the top codes
    assert set(nxt[0, 2:, 0].tolist()) <= {9.0, 8.0}


def test_ga_mutates_the_share_of_genes_it_is_told_to():
    ga = Genetic([1], population=50, mutation_rate=0.25, mutation_size=0.5, heritability=1.0, selectivity=1e6,
                 elites=0)
    population = torch.zeros(1, 50, 400)
    nxt = ga.tell(population, torch.zeros(1, 50))
    changed = (nxt != 0).float().mean().item()
    assert changed == pytest.approx(0.25, abs=0.02)
    assert nxt[nxt != 0].std().item() == pytest.approx(0.5, rel=0.1)


def test_ga_rows_draw_from_their_own_streams():
    population = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(0))
    scores = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    together = Genetic([10, 11, 12], population=8).tell(population, scores)
    alone = Genetic([11], population=8).tell(population[1:2], scores[1:2])
    assert torch.equal(together[1:2], alone)


def _maximise(rule, start, objective, generations):
    x = start
    for _ in range(generations):
        x = rule.tell(x, objective(x))
    return x


def test_separable_cma_es_finds_the_optimum_of_a_scaled_quadratic():
    centre = torch.linspace(-2, 2, 20)
    scale = torch.logspace(0, 1, 20)  # axes scaled 1..10: the diagonal covariance has to learn them
    objective = lambda x: -((x - centre) * scale).pow(2).sum(-1)
    cma = SeparableCMAES([0, 1], torch.zeros(2, 20), population=12, sigma=1.0)
    x = _maximise(cma, cma.start(), objective, 300)
    assert (cma.mean - centre).abs().max() < 1e-2  # both rows, from 2.0 away on some axes
    assert objective(x).max() > -1e-3
    assert cma.variances[:, 0].mean() > 10 * cma.variances[:, -1].mean()  # it learnt the axes' scales


def test_separable_cma_es_rows_are_independent_and_its_state_round_trips():
    objective = lambda x: -(x - 1).pow(2).sum(-1)
    both = SeparableCMAES([3, 4], torch.zeros(2, 6), population=8, sigma=0.5)
    one = SeparableCMAES([4], torch.zeros(1, 6), population=8, sigma=0.5)
    xb, x1 = both.start(), one.start()
    for _ in range(5):
        xb, x1 = both.tell(xb, objective(xb)), one.tell(x1, objective(x1))
    torch.testing.assert_close(xb[1:], x1)
    saved = {k: v.clone() for k, v in both.state().items()}
    after = both.tell(xb, objective(xb))
    again = SeparableCMAES([3, 4], torch.zeros(2, 6), population=8, sigma=0.5)
    again.load_state(saved)
    assert torch.equal(again.tell(xb, objective(xb)), after)


def test_a_nan_score_never_wins():
    ga = Genetic([0], population=4, mutation_rate=0.0, heritability=1.0, elites=1)
    population = torch.arange(4, dtype=torch.float32).view(1, 4, 1)
    nxt = ga.tell(population, torch.tensor([[1.0, math.nan, 0.0, -1.0]]))
    assert nxt[0, 0, 0] == 0.0


@pytest.mark.parametrize("kwargs", [{"population": 1}, {"mutation_rate": 2.0}, {"heritability": 0.2},
                                    {"elites": 20}])
def test_bad_genetic_settings_are_one_line_errors(kwargs):
    with pytest.raises(DGNError):
        Genetic([0], **kwargs)

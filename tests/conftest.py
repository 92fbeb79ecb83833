"""Shared test helpers: the real fixtures in ../shared/fixtures and small hand-made nets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real files made by other people's tools; skip when ../shared is absent (a user's clone)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_FIXTURES} (they live beside the repository, not in it)")
    return SHARED_FIXTURES


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dgn-cache")


@pytest.fixture(autouse=True)
def _private_cache(_cache_dir, monkeypatch):
    """Tests never touch the user's weights cache, never download, and see no local weights folders."""
    monkeypatch.setenv("DGN_CACHE", str(_cache_dir))
    monkeypatch.setenv("DGN_OFFLINE", "1")
    monkeypatch.delenv("DGN_WEIGHTS_DIR", raising=False)
    yield


@pytest.fixture
def one_thread():
    """Tiny nets run fastest on one thread; on a busy 2-core machine two OpenMP threads are ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


"""Images as codes: an encoder's search spaces and the codes of images in them."""

from __future__ import annotations

import pytest

from dgn.encoding import resolve_spaces
from dgn.errors import DGNError
from tests.tiny import tiny_pair


def test_default_spaces_follow_execution_order_and_relu():
    _, clf = tiny_pair()
    got = [(s.name, s.post_relu) for s in resolve_spaces(clf)]
    assert got == [("pixel", False), ("conv1", True), ("conv2", True), ("fc6", True), ("fc8", False)]
    assert [s.post_relu for s in resolve_spaces(clf, ["conv1:pre", "fc8:post"])] == [False, True]
    with pytest.raises(DGNError):
        resolve_spaces(clf, ["conv9"])

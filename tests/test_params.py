"""Parameterisations (dgn.params): starts, images and projections, by hand."""

import numpy as np
import torch

from dgn import spaces
from dgn.params import GeneratorCodes, Pixels, VideoCodes, initial_codes
from tests.tiny import CODE, tiny_pair


def test_generator_codes_start_image_and_box():
    gen, clf = tiny_pair()
    upper = torch.linspace(0.5, 2.0, CODE)
    param = GeneratorCodes(gen, clf.space, lower=0.0, upper=upper, decay=0.5)
    start = param.start([3, 4])
    assert torch.equal(start[0], torch.from_numpy(np.random.RandomState(3).normal(0, 1, CODE)).float())
    assert param.to_image(start).shape == (2, 3, 36, 36)  # 40x40 generator images, centre crop to 36
    torch.testing.assert_close(param.to_image(start), spaces.convert(gen(start), gen.space, clf.space))
    x = torch.tensor([[-1.0] * CODE, [10.0] * CODE])
    projected = param.project(x)
    assert torch.equal(projected[0], torch.zeros(CODE)) and torch.equal(projected[1], upper * 0.5)
    assert torch.equal(GeneratorCodes(gen, clf.space).project.upper, torch.full((CODE,), 3.0))  # the default bound


def test_video_codes_are_one_row_of_frames():
    gen, clf = tiny_pair()
    param = VideoCodes(gen, clf.space, frames=3)
    video = param.start([7])
    assert video.shape == (1, 3, CODE)
    assert torch.equal(video[0], initial_codes([7, 8, 9], (CODE,)))
    shared = param.start([7], shared=True)
    assert torch.equal(shared[0, 0], shared[0, 2]) and torch.equal(shared[0, 0], initial_codes([7], (CODE,))[0])
    assert param.to_image(video).shape == (3, 3, 36, 36)


def test_pixels_resize_iterate_and_clamp():
    low, high = torch.full((1, 3, 1, 1), -1.0), torch.full((1, 3, 1, 1), 1.0)
    param = Pixels((8, 8), (low, high))
    small = torch.randn(2, 3, 4, 4) * 5
    assert param.to_image(small).shape == (2, 3, 8, 8) and torch.equal(param.iterate(small), param.to_image(small))
    assert param.project(small).abs().max() <= 1.0
    assert torch.equal(Pixels((4, 4)).project(small), small) and Pixels((4, 4)).to_image(small) is small

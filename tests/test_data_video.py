from dataclasses import replace

import numpy as np
import pytest

from dgn.data_video import (
    SHAPE_CLASSES,
    Motion,
    clips_to_tensor,
    make_clips,
    render_clip,
    sample_appearance,
    sample_motion,
    start_from_middle,
)
from dgn.errors import DGNError


def test_clips_are_a_function_of_the_seed():
    a, la = make_clips(12, seed=5)
    b, lb = make_clips(12, seed=5)
    c, _ = make_clips(12, seed=6)
    assert a.shape == (12, 16, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert sorted(np.bincount(make_clips(16, seed=0)[1]).tolist()) == [2] * 8  # balanced labels


def test_classes_differ_only_by_motion():
    appearance = sample_appearance(np.random.default_rng(1))
    clips = [render_clip(appearance, Motion(label, 1.0 if label < 4 else (5.0 if label < 6 else 0.04)))
             for label in range(len(SHAPE_CLASSES))]
    for clip in clips[1:]:
        assert np.array_equal(clip[0], clips[0][0])  # the same first frame starts every class
    for i in range(len(clips)):
        for j in range(i + 1, len(clips)):
            assert np.abs(clips[i][-1].astype(int) - clips[j][-1].astype(int)).max() > 50, (i, j)


def centroid_x(frame: np.ndarray, background: np.ndarray) -> float:
    mask = np.abs(frame.astype(float) - background).sum(-1) > 120
    return float(np.nonzero(mask)[1].mean())


def test_left_and_right_move_the_shape_as_named():
    base = sample_appearance(np.random.default_rng(2))
    appearance = replace(base, background=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), colour=(1.0, 0.0, 0.0),
                         centre=(16.0, 16.0))
    grey = np.full(3, 0.5 * 255)
    right = render_clip(appearance, Motion(SHAPE_CLASSES.index("right"), 0.5))
    left = render_clip(appearance, Motion(SHAPE_CLASSES.index("left"), 0.5))
    assert centroid_x(right[-1], grey) - centroid_x(right[0], grey) == pytest.approx(7.5, abs=1.0)
    assert centroid_x(left[-1], grey) - centroid_x(left[0], grey) == pytest.approx(-7.5, abs=1.0)


def test_time_major_tensor_and_bad_labels():
    clips, _ = make_clips(3, seed=0)
    x = clips_to_tensor(clips)
    assert x.shape == (16, 3, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert np.allclose(x[4, 2].permute(1, 2, 0).numpy() * 255, clips[2, 4])
    with pytest.raises(DGNError, match="valid: 0..7"):
        sample_motion(8, np.random.default_rng(0))


def test_a_reversed_clip_is_its_partner_class():
    middle = sample_appearance(np.random.default_rng(4))
    for forward, backward in [("left", "right"), ("up", "down"), ("clockwise", "anticlockwise"), ("grow", "shrink")]:
        a = Motion(SHAPE_CLASSES.index(forward), {"grow": 0.06, "clockwise": 8.0}.get(forward, 1.2))
        b = Motion(SHAPE_CLASSES.index(backward), a.speed)
        clip_a = render_clip(start_from_middle(middle, a), a)
        clip_b = render_clip(start_from_middle(middle, b), b)
        # the same shapes in reverse order (the pixel noise is drawn per frame index: allow for it)
        assert (np.abs(clip_a[::-1].astype(int) - clip_b.astype(int)) > 60).mean() < 1e-3, forward
        assert (np.abs(clip_a.astype(int) - clip_b.astype(int)) > 60).mean() > 0.01, forward


def test_frame_states_follow_each_clip_motion():
    from dgn.data_video import SHAPES, frame_states

    _, labels = make_clips(16, seed=3)
    states = frame_states(16, seed=3)
    assert states.shape == (16, 16, 5) and set(states[..., 4].ravel()) <= set(range(len(SHAPES)))
    for label, s in zip(labels, states):
        name = SHAPE_CLASSES[label]
        step = np.diff(s, axis=0)
        dx = (step[:, 0] + 16) % 32 - 16  # positions wrap around the toroidal frame
        dy = (step[:, 1] + 16) % 32 - 16
        if name in ("left", "right"):
            assert np.allclose(dx, dx[0]) and (dx[0] < 0) == (name == "left") and np.allclose(dy, 0)
        elif name in ("up", "down"):
            assert np.allclose(dy, dy[0]) and (dy[0] < 0) == (name == "up") and np.allclose(dx, 0)
        elif name in ("clockwise", "anticlockwise"):
            assert (step[:, 3] < 0).all() == (name == "clockwise") and np.allclose(step[:, :3], 0)
        else:
            assert ((step[:, 2] > 0).all() if name == "grow" else (step[:, 2] < 0).all())

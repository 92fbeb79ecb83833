import pytest
import torch

from dgn.errors import DGNError
from dgn.models import ARCHITECTURES, load_caffe_classifier, load_classifier, load_generator, names
from dgn.synthesis import DGNAM, ActMaxSettings
from tests.tiny import tiny_pair


def test_every_named_architecture_declares_its_pixel_space():
    for name, arch in ARCHITECTURES.items():
        assert arch.space.name, name
        assert arch.kind in ("generator", "classifier")
    assert "deepsim-fc6" in names("generator") and "caffenet" in names("classifier")


def test_random_weights_are_seeded():
    a = load_classifier("caffenet", random_weights=True, seed=1).module.fc8.weight
    b = load_classifier("caffenet", random_weights=True, seed=1).module.fc8.weight
    c = load_classifier("caffenet", random_weights=True, seed=2).module.fc8.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(DGNError, match="valid: deepsim-fc6"):
        load_generator("biggan", random_weights=True)


def test_a_real_caffe_classifier_becomes_a_target(fixtures_dir):
    folder = fixtures_dir / "caffe/cifar10_quick_v1"
    clf = load_caffe_classifier(str(folder / "cifar10_quick.prototxt"), str(folder / "cifar10_quick_iter_5000.caffemodel"))
    assert clf.space.size == (32, 32) and len(clf.weights_sha256) == 64
    gen, _ = tiny_pair()
    result = DGNAM(gen, clf, ActMaxSettings(steps=30), device="cpu").synthesize(["ip2:3", "conv3:5"])
    assert (result.act_end > result.act_start).all()


def test_a_caffe_classifier_needs_its_weights(fixtures_dir):
    with pytest.raises(DGNError, match="--caffemodel"):
        load_caffe_classifier(str(fixtures_dir / "caffe/cifar10_quick_v1/cifar10_quick.prototxt"), None)

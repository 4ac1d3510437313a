"""LayerShape: validation, output-size conventions, MAC counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import HwsimError, WorkloadError
from hwsim.workloads import LayerShape, linear_layer


def conv(**kw) -> LayerShape:
    base = dict(name="c", kind="conv", in_h=8, in_w=8, in_channels=4, out_channels=6,
                kernel_h=3, kernel_w=3)
    base.update(kw)
    return LayerShape(**base)


def brute_force_out(size: int, lo: int, hi: int, kernel: int, stride: int, dilation: int) -> int:
    """Count window positions by walking them, the definition of a convolution's output size."""
    extent = dilation * (kernel - 1) + 1
    count, start = 0, 0
    while start + extent <= size + lo + hi:
        count += 1
        start += stride
    return count


def test_torch_output_size_with_padding_stride_dilation():
    layer = conv(in_h=224, in_w=224, kernel_h=7, kernel_w=7, stride_h=2, stride_w=2,
                 pad_top=3, pad_left=3, pad_bottom=3, pad_right=3)
    assert (layer.out_h(), layer.out_w()) == (112, 112)
    dilated = conv(in_h=10, in_w=9, dilation_h=2, dilation_w=3, pad_top=1, pad_bottom=0)
    assert dilated.out_h() == (10 + 1 - 5) // 1 + 1 == 7
    assert dilated.out_w() == 9 - 7 + 1 == 3


def test_scalesim_convention_ignores_padding():
    layer = conv(in_h=14, in_w=15, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1,
                 stride_h=1, stride_w=2)
    assert (layer.out_h("torch"), layer.out_w("torch")) == (14, 8)
    assert layer.out_h("scalesim") == 12  # ceil((14 - 3 + 1) / 1)
    assert layer.out_w("scalesim") == 7  # ceil((15 - 3 + 2) / 2)
    assert layer.padded().out_h("scalesim") == 14 and layer.padded().out_w("scalesim") == 8


def test_macs_counts_groups_and_batch():
    layer = conv(in_channels=8, out_channels=8, groups=4, batch=3,
                 pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    assert layer.macs() == 3 * 8 * 8 * 8 * (8 // 4) * 3 * 3
    fc = linear_layer("fc", 512, 1000, batch=2)
    assert fc.macs() == 2 * 512 * 1000


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       dilation=st.integers(1, 3), lo=st.integers(0, 3), hi=st.integers(0, 3))
def test_torch_convention_matches_brute_force(size, kernel, stride, dilation, lo, hi):
    if dilation * (kernel - 1) + 1 > size + lo + hi:
        return
    layer = conv(in_h=size, in_w=size, kernel_h=kernel, kernel_w=kernel, stride_h=stride,
                 stride_w=stride, dilation_h=dilation, dilation_w=dilation, pad_top=lo,
                 pad_bottom=hi, pad_left=lo, pad_right=hi)
    assert layer.out_h("torch") == brute_force_out(size, lo, hi, kernel, stride, dilation)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4))
def test_conventions_agree_without_padding_when_stride_divides(size, kernel, stride):
    if kernel > size or (size - kernel) % stride:
        return
    layer = conv(in_h=size, in_w=size, kernel_h=kernel, kernel_w=kernel, stride_h=stride,
                 stride_w=stride)
    expected = brute_force_out(size, 0, 0, kernel, stride, 1)
    assert layer.out_h("torch") == layer.out_h("scalesim") == expected
    assert layer.macs("torch") == layer.macs("scalesim")


def test_scalesim_convention_overcounts_when_stride_does_not_divide():
    # SCALE-Sim's ceil((H - R + s) / s) is one more than the real output size here.
    layer = conv(in_h=16, in_w=16, stride_h=2, stride_w=2)  # (16 - 3) % 2 == 1
    assert layer.out_h("torch") == brute_force_out(16, 0, 0, 3, 2, 1) == 7
    assert layer.out_h("scalesim") == 8


@pytest.mark.parametrize("kw, field", [
    (dict(in_h=0), "in_h"),
    (dict(out_channels=-3), "out_channels"),
    (dict(stride_w=0), "stride_w"),
    (dict(pad_left=-1), "pad_left"),
    (dict(in_channels=6, groups=4), "groups"),
    (dict(kernel_h=11), "kernel_h"),
    (dict(kind="pool"), "kind"),
    (dict(in_h=2.5), "in_h"),
    (dict(weight_format=""), "weight_format"),
    (dict(act_format=None), "act_format"),
    (dict(weight_format=4), "weight_format"),
])
def test_invalid_layer_names_layer_and_field(kw, field):
    with pytest.raises(WorkloadError) as err:
        conv(name="layer3.0.conv1", **kw)
    assert "layer3.0.conv1" in str(err.value)
    assert field in str(err.value)
    assert isinstance(err.value, HwsimError)


def test_kernel_fits_only_with_padding_is_valid_but_not_under_scalesim():
    layer = conv(in_h=2, in_w=2, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    assert layer.out_h() == 2
    with pytest.raises(WorkloadError, match="output height"):
        layer.out_h("scalesim")


def test_unknown_convention():
    with pytest.raises(WorkloadError, match="torch"):
        conv().out_h("caffe")


def test_linear_layer_must_be_1x1():
    with pytest.raises(WorkloadError, match="linear"):
        LayerShape(name="fc", kind="linear", in_h=2, in_w=1, in_channels=4, out_channels=4,
                   kernel_h=1, kernel_w=1)


def test_formats_default_to_int_and_are_kept():
    layer = conv()
    assert (layer.weight_format, layer.act_format) == ("int", "int")
    apot = conv(weight_format="apot", weight_bits=4)
    assert (apot.weight_format, apot.act_format, apot.weight_bits) == ("apot", "int", 4)
    assert apot.padded().weight_format == "apot"
    fc = linear_layer("fc", 8, 4, weight_format="binary", act_format="binary", weight_bits=1)
    assert (fc.weight_format, fc.act_format) == ("binary", "binary")

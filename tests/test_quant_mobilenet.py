"""End to end: int8 per-channel MobileNetV2 fake quantization on the sample images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsim.zoo import mobilenet_v2, sample_images
from quant import QuantConfig, quantize


@pytest.mark.slow
def test_mobilenet_int8_fake_quant_agrees_with_float():
    model = mobilenet_v2()
    calib, ev = sample_images("calib"), sample_images("eval")
    qm = quantize(model, QuantConfig(), [calib[i:i + 7] for i in range(0, len(calib), 7)])
    with torch.no_grad():
        ref = torch.cat([model(ev[i:i + 10]) for i in range(0, len(ev), 10)])
    out = torch.cat([qm.forward(ev[i:i + 10]) for i in range(0, len(ev), 10)])
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
    sqnr_db = 10 * np.log10(float((ref**2).sum()) / float(((out - ref) ** 2).sum()))
    print(f"\nMobileNetV2 W8(per-channel)A8 min-max: top-1 agreement {agree:.2f} on "
          f"{len(ev)} eval images, logits SQNR {sqnr_db:.1f} dB")
    # measured 0.84 and 14.7 dB; int8 MobileNetV2 is known to be quantization-sensitive
    assert agree >= 0.7
    assert sqnr_db >= 10.0
    flo = qm.float_forward(ev[:10])
    assert float((flo - ref[:10]).abs().max()) <= 1e-5 * float(ref[:10].abs().max())

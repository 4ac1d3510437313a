"""Calibration: activation ranges, and the post-training steps that adjust weights, biases and
ranges so the quantized model stays close to the float one.

``observers`` holds the activation observers and the calibration pass over the float graph;
``state`` the value every step maps to another (``CalibrationState``).
"""

from quant.calibrate.observers import (REQUANTIZING_OPS, ActivationObserver, BinaryScaleObserver,
                                       calibrate, calibrate_activations)
from quant.calibrate.state import CalibrationState, with_layer

__all__ = ["REQUANTIZING_OPS", "ActivationObserver", "BinaryScaleObserver", "CalibrationState",
           "calibrate", "calibrate_activations", "with_layer"]

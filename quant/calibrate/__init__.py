"""Calibration: activation ranges, and the post-training steps that adjust weights, biases and
ranges so the quantized model stays close to the float one.

``observers`` holds the activation observers and the calibration pass over the float graph.
"""

from quant.calibrate.observers import (REQUANTIZING_OPS, ActivationObserver, BinaryScaleObserver,
                                       calibrate, calibrate_activations)

__all__ = ["REQUANTIZING_OPS", "ActivationObserver", "BinaryScaleObserver", "calibrate",
           "calibrate_activations"]

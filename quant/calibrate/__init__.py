"""Calibration: activation ranges, and the post-training steps that adjust weights, biases and
ranges so the quantized model stays close to the float one.

``observers`` holds the activation observers and the calibration pass over the float graph;
``state`` the value every step maps to another (``CalibrationState``).
"""

from quant.calibrate.observers import (REQUANTIZING_OPS, ActivationObserver, BinaryScaleObserver,
                                       calibrate, calibrate_activations)
from quant.calibrate.adaquant import AdaQuantReport, adaquant, adaquant_with_report
from quant.calibrate.bias_correction import correct_biases, sequential_pass
from quant.calibrate.bias_tuning import BiasTuningReport, tune_biases, tune_biases_with_report
from quant.calibrate.bn_reestimate import reestimate_bn
from quant.calibrate.equalize import equalize, equalize_with_report
from quant.calibrate.pipeline_config import PipelineConfig
from quant.calibrate.smooth import smooth, smooth_with_report
from quant.calibrate.outlier_split import split_outliers, split_outliers_with_report
from quant.calibrate.state import CalibrationState, with_layer

__all__ = ["REQUANTIZING_OPS", "ActivationObserver", "AdaQuantReport", "BiasTuningReport",
           "BinaryScaleObserver", "CalibrationState", "adaquant", "adaquant_with_report",
           "calibrate", "calibrate_activations", "correct_biases", "equalize",
           "equalize_with_report", "PipelineConfig", "PipelineResult", "reestimate_bn",
           "run_pipeline", "sequential_pass", "smooth", "smooth_with_report",
           "split_outliers", "split_outliers_with_report", "tune_biases",
           "tune_biases_with_report", "with_layer"]


def __getattr__(name: str):
    # the pipelines import the allocator (scipy) and the sensitivity options: loaded on use
    if name in ("PipelineResult", "run_pipeline"):
        from quant.calibrate import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'quant.calibrate' has no attribute {name!r}")

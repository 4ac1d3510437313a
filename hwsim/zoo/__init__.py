"""Model zoo (torch bridge): MobileNetV2 with ImageNet weights, seeded ResNets (random weights),
all-MiniLM-L6-v2 with its real weights, sample images.

`hwsim.zoo.minilm()` is the MiniLM *function* although `hwsim/zoo/minilm.py` is also a submodule
(`from hwsim.zoo.minilm import MiniLM` keeps working): the submodule is imported here first, so
the import system's binding of it on this package happens before the function is bound.
"""

import hwsim.zoo.minilm as _minilm_module  # noqa: F401  (first import: binds the submodule)
from hwsim.zoo.images import CALIB_IMAGES, EVAL_IMAGES, sample_images
from hwsim.zoo.minilm import MiniLM, minilm, minilm_model_dir  # rebinds `minilm`: the function
from hwsim.zoo.mobilenet import MobileNetV2, mobilenet_v2, mobilenet_v2_weights_path
from hwsim.zoo.resnet import ResNet, resnet18, resnet50

__all__ = [
    "CALIB_IMAGES",
    "EVAL_IMAGES",
    "MiniLM",
    "MobileNetV2",
    "ResNet",
    "minilm",
    "minilm_model_dir",
    "mobilenet_v2",
    "mobilenet_v2_weights_path",
    "resnet18",
    "resnet50",
    "sample_images",
]

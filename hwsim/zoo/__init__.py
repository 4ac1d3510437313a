"""Model zoo (torch bridge): MobileNetV2 with ImageNet weights, seeded ResNets, sample images."""

from hwsim.zoo.images import CALIB_IMAGES, EVAL_IMAGES, sample_images
from hwsim.zoo.mobilenet import MobileNetV2, mobilenet_v2, mobilenet_v2_weights_path
from hwsim.zoo.resnet import ResNet, resnet18, resnet50

__all__ = [
    "CALIB_IMAGES",
    "EVAL_IMAGES",
    "MobileNetV2",
    "ResNet",
    "mobilenet_v2",
    "mobilenet_v2_weights_path",
    "resnet18",
    "resnet50",
    "sample_images",
]

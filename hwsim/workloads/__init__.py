"""Workloads: layer shapes, built-in networks and SCALE-Sim topology files."""

from hwsim.workloads.conv_transpose import conv_transpose_layer
from hwsim.workloads.builtin import builtin_workload, builtin_workload_names
from hwsim.workloads.layer import CONVENTIONS, LayerShape, linear_layer
from hwsim.workloads.program import program_workload, uncosted_ops
from hwsim.workloads.topology_csv import load_topology_csv

__all__ = [
    "CONVENTIONS",
    "LayerShape",
    "builtin_workload",
    "builtin_workload_names",
    "conv_transpose_layer",
    "linear_layer",
    "load_topology_csv",
    "program_workload",
    "uncosted_ops",
]

"""MobileNetV2 (real ImageNet weights) -> int8 -> bit-accurate integer program -> verify -> cost.

The same flow as `hwsim demo`, written out with the Python API so you can change any step.

    python examples/mobilenet_int8.py
"""
import quant
from hwsim import execute, save_program, zoo
from hwsim.arch import load_accelerator
from hwsim.cost import cost_network
from hwsim.flows import program_workload
from hwsim.lower import lower
from hwsim.verify import verify

# 1. A float model and images: calibration and evaluation sets are disjoint.
model = zoo.mobilenet_v2().eval()
calib = zoo.sample_images("calib")
evals = zoo.sample_images("eval")

# 2. Quantize: int8 symmetric per-channel weights, uint8 asymmetric per-tensor activations.
config = quant.QuantConfig(
    weight=quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True),
    activation=quant.IntFormat(bits=8, signed=False, symmetric=False, per_channel=False),
)
qm = quant.quantize(model, config, [calib], example_input=calib[:1])

# 3. Lower to an integer program (dyadic requantization: integer-only, round half up).
program = lower(qm, requant="dyadic", accumulator_bits=32, accumulator_mode="wrap")
save_program(program, "hwsim_out/mobilenet_v2_int8")  # .json + .npz, loadable without torch

# 4. Run it bit-accurately and compare with the fake-quant and float models.
result = execute(program, qm.quantize_input(evals))
print("integer logits:", result.output.shape, result.output.dtype)
report = verify(qm, program, evals)
print(report.to_text())

# 5. Cost it on an int8 systolic array.
accel = load_accelerator("hw_configs/int8_systolic.yaml")
cost = cost_network(accel, program_workload(program))
print(cost.per_layer[["name", "compute_cycles", "total_cycles", "energy_total_pj"]].head())
print(cost.totals())

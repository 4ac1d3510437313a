"""Train a binary CNN on sklearn's 8x8 digits with least-squares binary formats; print accuracies.

Reproduces the activation study of "Least squares binary quantization of neural networks"
(Pouransari, Tu, Tuzel; CVPR Workshops 2020) at toy scale:

* weights of the middle (binarized) convs: LS-1 per output channel, fake-quantized in the
  forward with the straight-through estimator (latent float weights are what Adam updates);
* activations entering those convs: per sample, one of 1-bit (LS-1), ternary (LS-T), GF-2,
  LS-2, or float;
* network: widths 8/16/16 by default (``--widths``); digits saturates near 98-99% with wide
  layers (32/64/64), where the quantizers tie within seed noise; a narrow net shows the gaps;
* first conv and final linear: int8 fake-quant (symmetric per-channel weights, 8-bit
  activations with static ranges).

Activations after ReLU are non-negative, a poor fit for +-1 codes. Following the usual
binary-network layout (BatchNorm before the binarizer, as in XNOR-Net / Bi-Real Net; the
paper's exact placement is not checked here), a binarized conv's input is the BatchNorm
output passed through hardtanh, which is zero-centred and sign-friendly. The float-activation runs use the same
hardtanh as their non-linearity, so the only difference between rows is the quantizer.

    python examples/train_binary_digits.py                  # the full table: 5 seeds, ~2 min
    python examples/train_binary_digits.py --epochs 2 --seeds 1 --acts float,ls1   # quick

Everything is seeded (torch, numpy; fixed train/test split), so two runs print the same table.
"""
from __future__ import annotations

import argparse
import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import quant
from quant.errors import QuantError

# Activation quantizers of the binarized convs' inputs, in the paper's expected order.
ACT_FORMATS: dict[str, quant.BinaryFormat | None] = {
    "ls1": quant.BinaryFormat("ls1", axis=0),
    "lst": quant.BinaryFormat("lst", axis=0),
    "gf2": quant.BinaryFormat("gf", k=2, axis=0),
    "ls2": quant.BinaryFormat("ls2", axis=0),
    "float": None,
}
ACT_LABELS = {"ls1": "1-bit (LS-1)", "lst": "ternary (LS-T)", "gf2": "GF-2", "ls2": "LS-2",
              "float": "float", "baseline": "float weights, float activations"}
BASELINE = "baseline"  # no quantization anywhere
_HETERO_CONFIG = Path(__file__).resolve().parents[1] / "hw_configs" / "hetero_int8_xnor.yaml"

_WEIGHT_INT8 = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
_INPUT_UINT8 = quant.IntFormat(bits=8, signed=False, symmetric=False, per_channel=False)
_ACT_INT8 = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=False)
_WEIGHT_LS1 = quant.BinaryFormat("ls1", axis=0)


@dataclass(frozen=True)
class TrainSettings:
    """Network widths and optimisation settings shared by every run (Adam, cosine-decayed
    learning rate). ``widths``: output channels of conv1, conv2, conv3."""

    widths: tuple[int, int, int] = (8, 16, 16)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.0
    test_size: float = 0.25
    split_seed: int = 0


def _int8_ste(x: torch.Tensor, fmt: quant.IntFormat,
              bounds: tuple[float, float] | None = None) -> torch.Tensor:
    """Fake-quantize ``x`` with ``fmt`` (numpy, quant's rounding) and pass gradients straight
    through. Per-channel formats use axis 0 (output channels of a weight); ``bounds`` fixes a
    per-tensor range (a static activation scale) instead of the tensor's min-max."""
    x_np = x.detach().to(torch.float64).numpy()
    params = quant.fit_int_params(x_np, fmt, bounds=bounds)
    x_hat = torch.from_numpy(params.fake_quantize(x_np)).to(x.dtype)
    return x + (x_hat - x).detach()


class DigitsNet(nn.Module):
    """Conv(1->c1, int8) -> BN, hardtanh -> [A, Conv(c1->c2, LS-1)] -> BN, hardtanh, pool ->
    [A, Conv(c2->c3, LS-1)] -> BN, hardtanh, pool -> Linear(4*c3->10, int8), all convs 3x3 with
    padding 1, ``(c1, c2, c3) = widths``.

    Input (N, 1, 8, 8) in [0, 1]; output logits (N, 10). ``act`` is a key of ACT_FORMATS
    (the quantizer A of the binarized convs' inputs) or ``"baseline"`` (nothing quantized).
    BatchNorm follows each conv directly, so deployment folds it into the conv (a positive
    per-channel scale of LS-1 weights is again LS-1; a negative one flips the signs).
    """

    def __init__(self, act: str, widths: tuple[int, int, int] = (8, 16, 16)) -> None:
        super().__init__()
        if act not in ACT_FORMATS and act != BASELINE:
            raise QuantError(f"DigitsNet: unknown activation quantizer {act!r}; expected one of "
                             f"{[*ACT_FORMATS, BASELINE]}")
        self.act = act
        c1, c2, c3 = widths
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c3)
        self.fc = nn.Linear(c3 * 2 * 2, 10)

    @property
    def _quantized(self) -> bool:
        return self.act != BASELINE

    def _binary_conv(self, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        fmt = ACT_FORMATS.get(self.act)
        if fmt is not None:
            x = quant.binary_fake_quant(x, fmt)
        w = quant.binary_fake_quant(conv.weight, _WEIGHT_LS1) if self._quantized else conv.weight
        return F.conv2d(x, w, conv.bias, padding=conv.padding)

    def _int8_layer(self, x: torch.Tensor, layer: nn.Module, in_fmt: quant.IntFormat,
                    in_bounds: tuple[float, float],
                    op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> torch.Tensor:
        w = layer.weight
        if self._quantized:
            x = _int8_ste(x, in_fmt, in_bounds)
            w = _int8_ste(w, _WEIGHT_INT8)
        return op(x, w, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._int8_layer(x, self.conv1, _INPUT_UINT8, (0.0, 1.0),
                             lambda a, w, b: F.conv2d(a, w, b, padding=1))
        x = F.hardtanh(self.bn1(x))                                   # (N, c1, 8, 8)
        x = F.max_pool2d(F.hardtanh(self.bn2(self._binary_conv(x, self.conv2))), 2)
        x = F.max_pool2d(F.hardtanh(self.bn3(self._binary_conv(x, self.conv3))), 2)
        return self._int8_layer(x.flatten(1), self.fc, _ACT_INT8, (-1.0, 1.0), F.linear)

    def deployable(self) -> nn.Sequential:
        """The same network as plain float modules (copies, eval mode), which ``quant.quantize``
        captures: conv1, bn1, act1, conv2, bn2, act2, pool2, conv3, bn3, act3, pool3, flatten,
        fc. The quantizers come from ``deploy_config``."""
        m = copy.deepcopy(self)
        return nn.Sequential(OrderedDict(
            conv1=m.conv1, bn1=m.bn1, act1=nn.Hardtanh(), conv2=m.conv2, bn2=m.bn2,
            act2=nn.Hardtanh(), pool2=nn.MaxPool2d(2), conv3=m.conv3, bn3=m.bn3,
            act3=nn.Hardtanh(), pool3=nn.MaxPool2d(2), flatten=nn.Flatten(), fc=m.fc)).eval()


def deploy_config(act: str, scaling: str = "per_sample") -> quant.QuantConfig:
    """Post-training quantization of a trained DigitsNet's ``deployable()``: int8 per-channel
    weights and uint8 activations everywhere, LS-1 weights on conv2 / conv3, whose inputs are
    binarized with ``act``'s format (``scaling``: "per_sample" or "running"; "float" keeps
    them as integer codes: binary weights times int8 activations)."""
    binary = {"conv2": _WEIGHT_LS1, "conv3": _WEIGHT_LS1}
    fmt = ACT_FORMATS[act]
    inputs = {} if fmt is None else {name: quant.BinaryInput(fmt, scaling) for name in binary}
    return quant.QuantConfig(layer_weight=binary, binary_inputs=inputs)


def deploy(model: DigitsNet, data: tuple[torch.Tensor, ...], scaling: str = "per_sample"
           ) -> dict[str, Any]:
    """Quantize ``model`` (calibrated on the training images), lower it to hwsim's integer
    program and run the test images through the bit-accurate executor.

    Returns ``fake_acc`` / ``int_acc`` (fractions), ``agree`` (test images whose integer
    prediction equals the fake-quant model's), ``images``, ``max_lsb`` (largest difference
    of any layer, fed the fake-quant model's inputs, in output LSBs) and ``program`` (the
    ``hwsim.IntProgram``).
    """
    from hwsim import execute
    from hwsim.lower import lower
    from hwsim.verify import verify

    x_tr, _, x_te, y_te = data
    qm = quant.quantize(model.deployable(), deploy_config(model.act, scaling), [x_tr],
                        example_input=x_tr[:1])
    program = lower(qm)
    int_pred = execute(program, qm.quantize_input(x_te)).output.argmax(axis=1)
    fake_pred = qm(x_te).argmax(1).numpy()
    labels = y_te.numpy()
    report = verify(qm, program, x_te.numpy())
    return {"fake_acc": float((fake_pred == labels).mean()),
            "int_acc": float((int_pred == labels).mean()),
            "agree": int((int_pred == fake_pred).sum()), "images": len(labels),
            "max_lsb": int(report.summary["max_lsb_diff_any_layer"]), "program": program}


def deployed_cost(program: Any, config: Path) -> pd.DataFrame:
    """Per-layer cost of a deployed program (batch 1) on the accelerator YAML ``config``: the
    unit that ran each layer, operand widths, cycles and energy (pJ)."""
    from hwsim import cost_network, load_accelerator
    from hwsim.flows import program_workload

    per_layer = cost_network(load_accelerator(config), program_workload(program)).per_layer
    cols = ["name", "unit", "act_bits", "weight_bits", "macs", "total_cycles",
            "energy_compute_pj", "energy_total_pj"]
    return per_layer[cols]


def load_split(settings: TrainSettings) -> tuple[torch.Tensor, ...]:
    """Digits as float32 (N, 1, 8, 8) in [0, 1] and int64 labels: (x_train, y_train, x_test,
    y_test), split stratified with ``settings.split_seed``."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=settings.test_size,
                                              random_state=settings.split_seed,
                                              stratify=digits.target)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_te), torch.from_numpy(y_te).long())


def train_one(act: str, seed: int, data: tuple[torch.Tensor, ...],
              settings: TrainSettings) -> float:
    """Train a DigitsNet with activation quantizer ``act`` from ``seed``; return test accuracy
    (fraction in [0, 1], evaluated with BatchNorm in eval mode)."""
    return test_accuracy(train_model(act, seed, data, settings), data)


def test_accuracy(model: DigitsNet, data: tuple[torch.Tensor, ...]) -> float:
    """Accuracy of the training-time forward (fake quantizers as trained) on the test split."""
    _, _, x_te, y_te = data
    model.eval()
    with torch.no_grad():
        pred = model(x_te).argmax(1)
    return float((pred == y_te).float().mean())


def train_model(act: str, seed: int, data: tuple[torch.Tensor, ...],
                settings: TrainSettings) -> DigitsNet:
    """Train a DigitsNet with activation quantizer ``act`` from ``seed`` (Adam, cosine
    schedule, straight-through estimators); returned in eval mode."""
    x_tr, y_tr, _, _ = data
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = DigitsNet(act, settings.widths)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(x_tr) // settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for start in range(0, len(x_tr), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def run(acts: Sequence[str], seeds: Sequence[int], settings: TrainSettings,
        scaling: str | None = "per_sample") -> pd.DataFrame:
    """Train every (activation quantizer, seed); one row per quantizer with columns
    ``act``, ``activations``, ``mean_acc``, ``std_acc``, ``min_acc``, ``max_acc``,
    ``seeds`` (count) and ``seconds`` (wall time of its runs).

    Unless ``scaling`` is None, every trained quantized network is also deployed (see
    ``deploy``) with that binarizer scaling, adding ``fake_acc`` and ``int_acc`` (means over
    seeds), ``agree`` / ``images`` (summed over seeds) and ``max_lsb`` (max over seeds); the
    baseline row has NaN / 0 there. ``table.attrs["programs"]`` maps each deployed quantizer to
    the integer program of its first seed.
    """
    if not seeds:
        raise QuantError("train_binary_digits: 'seeds' must name at least one seed")
    data = load_split(settings)
    rows, programs = [], {}
    for act in acts:
        t0 = time.perf_counter()
        accs, deployed = [], []
        for seed in seeds:
            model = train_model(act, seed, data, settings)
            accs.append(test_accuracy(model, data))
            if scaling is not None and act != BASELINE:
                deployed.append(deploy(model, data, scaling))
        accs = np.array(accs)
        row = {"act": act, "activations": ACT_LABELS[act], "mean_acc": accs.mean(),
               "std_acc": accs.std(), "min_acc": accs.min(), "max_acc": accs.max(),
               "seeds": len(accs)}
        if deployed:
            programs[act] = deployed[0]["program"]
        d = pd.DataFrame([{k: v for k, v in r.items() if k != "program"} for r in deployed])
        row.update(fake_acc=d["fake_acc"].mean() if deployed else float("nan"),
                   int_acc=d["int_acc"].mean() if deployed else float("nan"),
                   agree=int(d["agree"].sum()) if deployed else 0,
                   images=int(d["images"].sum()) if deployed else 0,
                   max_lsb=int(d["max_lsb"].max()) if deployed else 0,
                   seconds=time.perf_counter() - t0)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["programs"] = programs
    return table


def parse_acts(text: str) -> list[str]:
    """``"ls1,float"`` -> ``["ls1", "float"]``, checked against ACT_FORMATS and ``baseline``."""
    valid = [*ACT_FORMATS, BASELINE]
    acts = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in acts if a not in valid]
    if bad or not acts:
        raise QuantError(f"--acts: unknown activation quantizer(s) {bad or text!r}; expected a "
                         f"comma-separated subset of {valid}")
    return acts


def parse_widths(text: str) -> tuple[int, int, int]:
    """``"32,64,64"`` -> ``(32, 64, 64)``; three positive ints."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) < 1:
        raise QuantError(f"--widths: expected three positive ints like '32,64,64'; got {text!r}")
    return widths  # type: ignore[return-value]


def format_table(table: pd.DataFrame, settings: TrainSettings) -> str:
    """The printed accuracy table (accuracy in %, mean +- std over seeds)."""
    lines = [f"digits test accuracy, {int(table['seeds'].iloc[0])} seed(s), {settings.epochs} "
             "epochs; weights of binarized convs LS-1 per channel, first/last layers int8",
             "trained: the training forward; deployed: post-training quantized (uint8 "
             "activations, binarized conv inputs) as fake-quant and as hwsim's integer program",
             f"{'activations of binarized convs':<34} {'trained %':>16} {'min..max %':>14} "
             f"{'fake-quant %':>12} {'integer %':>9} {'int == fake':>13} {'max LSB':>7} "
             f"{'time s':>7}"]
    for r in table.itertuples():
        acc = f"{100 * r.mean_acc:6.2f} +- {100 * r.std_acc:4.2f}"
        span = f"{100 * r.min_acc:5.1f}..{100 * r.max_acc:5.1f}"
        if r.images:
            dep = (f"{100 * r.fake_acc:12.2f} {100 * r.int_acc:9.2f} "
                   f"{f'{r.agree}/{r.images}':>13} {r.max_lsb:7d}")
        else:
            dep = f"{'-':>12} {'-':>9} {'-':>13} {'-':>7}"
        lines.append(f"{r.activations:<34} {acc:>16} {span:>14} {dep} {r.seconds:7.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Parse flags, train, print the table; returns it (see ``run``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0, 1, ...)")
    parser.add_argument("--acts", default=",".join([*ACT_FORMATS, BASELINE]),
                        help="comma-separated subset of " + ", ".join([*ACT_FORMATS, BASELINE]))
    parser.add_argument("--widths", default="8,16,16",
                        help="output channels of conv1,conv2,conv3")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--cost", type=Path, default=_HETERO_CONFIG,
                        help="accelerator YAML pricing the deployed LS-2 network (or the first "
                             "deployed quantizer), layer by layer")
    parser.add_argument("--scaling", default="per_sample",
                        choices=["per_sample", "running", "none"],
                        help="deploy the trained networks with per-sample or running (static) "
                             "binarizer scales, or not at all (none)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.seeds < 1:
        raise QuantError(f"train_binary_digits: --epochs and --seeds must be >= 1; got "
                         f"epochs={args.epochs}, seeds={args.seeds}")
    torch.set_num_threads(args.threads)
    settings = TrainSettings(widths=parse_widths(args.widths), epochs=args.epochs)
    t0 = time.perf_counter()
    table = run(parse_acts(args.acts), list(range(args.seeds)), settings,
                None if args.scaling == "none" else args.scaling)
    print(format_table(table, settings))
    programs = table.attrs["programs"]
    if programs:
        act = "ls2" if "ls2" in programs else next(iter(programs))
        print(f"\ncost of the deployed {ACT_LABELS[act]} network (seed 0, batch 1) on "
              f"{args.cost.name}:")
        print(deployed_cost(programs[act], args.cost).to_string(index=False))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return table


if __name__ == "__main__":
    main()

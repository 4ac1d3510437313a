"""Regenerate the README's figure blocks from what the commands print, or check them.

Each block sits between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in README.md:

- ``demo``: `hwsim demo`'s verification summary (its --json output), and a noise experiment
  that shows how fragile the int8 model's top-1 is;
- ``apot``: the tables `examples/apot_mobilenet.py` prints;
- ``digits``: the accuracy table of `examples/train_binary_digits.py` (its `main`);
- ``minilm``: the cosine table of `examples/minilm_int8.py` (the same calls);
- ``bitfusion``: what `examples/bitfusion_mobilenet.py` prints (summary, and per layer);
- ``bitserial``: the cycle/energy table of `bench/bench_bit_serial.py` (not its timings);
- ``zigzag``: the hwsim-vs-ZigZag table of `bench/bench_zigzag.py`;
- ``codesign``: what `examples/codesign_mobilenet.py` prints (without wall times);
- ``multipoint``: the relative weight error of multipoint fits on a seeded (64, 1152) N(0, 1)
  matrix, the paper's setting (the same matrix `tests/test_quant_multipoint.py` checks), with
  the 400-point grid and the default search (a fit of n points per cell);
- ``ptq``: `bench/bench_ptq.py`'s MobileNetV2 rows of round-to-nearest and the calibration
  pipelines (integer programs on the 50 evaluation images; not its times, one torch thread);
- ``gallery``: the model gallery table (``tests/_gallery.py``; `tests/test_model_gallery.py`
  checks each row).

    python scripts/readme_figures.py                 # rewrite every block
    python scripts/readme_figures.py --check demo    # exit 1 and print a diff if stale
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _noise_experiment() -> dict:
    """The fake-quant model on its input plus uniform noise of 1e-6: top-1 flips and SQNR
    between the two runs; the same for the float model."""
    import numpy as np
    import torch

    from hwsim.flows import quantize_zoo_model
    from hwsim.verify import sqnr_db

    flow = quantize_zoo_model("mobilenet_v2", bits=8, act_bits=8)
    x = flow.eval_images
    noisy = x + 1e-6 * torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, x.shape)
                                        .astype(np.float32))
    out = {}
    for mode in ("fake", "float"):
        runs = [torch.cat([flow.qm._run(batch, mode, keep=False)[flow.qm.graph.output_name]
                           for batch in images.split(4)]).numpy() for images in (x, noisy)]
        out[mode] = (float(np.mean(runs[0].argmax(1) != runs[1].argmax(1))),
                     sqnr_db(runs[0], runs[1]))
    return out


def demo_block() -> str:
    from hwsim.cli.main import main

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.json"
        if main(["demo", "--quiet", "--json", str(path)]) != 0:
            raise SystemExit("hwsim demo failed")
        doc = json.loads(path.read_text())
    s, layers = doc["summary"], [r for r in doc["per_layer"]]
    worst_e2e = max(layers, key=lambda r: r["max_lsb_diff_e2e"])
    noise = _noise_experiment()
    flips, noise_db = noise["fake"]
    float_flips, _ = noise["float"]
    bit_exact = s["layers_bit_exact"].split("/")
    bullets = [
        f"Every layer of the integer program, fed the fake-quant model's inputs, is within "
        f"**{s['max_lsb_diff_any_layer']} LSB** of the fake-quant model (at most "
        f"{max(r['mismatch_pct'] for r in layers):.4f}% of a layer's outputs differ, only at "
        f"rounding boundaries); {bit_exact[0]} of {bit_exact[1]} layers are bit-exact on all "
        f"{s['images']} images. Accumulator overflows at 32 bits: {s['total_overflows']}.",
        f"Top-1 agreement with the float model: **{s['top1_agreement_int_vs_float']:.2f}** for "
        f"the integer program and {s['top1_agreement_fake_vs_float']:.2f} for the fake-quant "
        f"model; output SQNR vs float {s['output_sqnr_db_int_vs_float']:.1f} dB (integer) and "
        f"{s['output_sqnr_db_fake_vs_float']:.1f} dB (fake-quant).",
        f"End to end, the rare 1-LSB differences grow downstream (up to "
        f"{worst_e2e['max_lsb_diff_e2e']} LSB at `{worst_e2e['layer']}`) and the integer program "
        f"and the fake-quant model agree on top-1 for {s['top1_agreement_int_vs_fake']:.2f} of "
        f"the images ({s['output_sqnr_db_int_vs_fake']:.1f} dB between them). That is a property "
        f"of this quantized model, not of the integer path: adding noise of 1e-6 to the "
        f"fake-quant model's own input flips its top-1 on {100 * flips:.0f}% of the images "
        f"({noise_db:.1f} dB between the two runs), while the float model's top-1 moves on "
        f"{100 * float_flips:.0f}%.",
    ]
    c = s["codesign"]
    u, p = c["uniform_w8a8"], c["plan"]
    mix = ", ".join(f"{n} × {label.split()[-1].upper()}"
                    for label, n in sorted(p["options"].items(), key=lambda kv: -kv[1]))
    bullets.append(
        f"Co-design on `{c['accelerator']}` (Loom, bit-serial) under latency ≤ "
        f"{c['latency_budget']:g}× uniform W8A8: the allocator's plan ({mix}) runs in "
        f"**{p['latency_ms']:.3f} ms** ({p['latency_ms'] / u['latency_ms']:.3f}×) and "
        f"{p['energy_uj']:.1f} µJ ({p['energy_uj'] / u['energy_uj']:.3f}×) against uniform "
        f"W8A8's {u['latency_ms']:.3f} ms and {u['energy_uj']:.1f} µJ, at top-1 agreement "
        f"{p['top1_agreement']:.2f} (W8A8: {u['top1_agreement']:.2f}) and SQNR "
        f"{p['sqnr_db']:.1f} dB ({u['sqnr_db']:.1f} dB); the allocator's predicted latency and "
        f"energy equal the simulated ones: "
        f"{'yes' if p['predicted_equals_simulated'] and u['predicted_equals_simulated'] else 'NO'}.")
    return "\n".join(textwrap.fill(b, width=96, initial_indent="- ", subsequent_indent="  ",
                                   break_on_hyphens=False)
                     for b in bullets)


def apot_block() -> str:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "apot_mobilenet.py")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    tables, current = [], []
    for line in lines:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    summary = next(line for line in lines if line.startswith("APoT vs uniform:"))
    heading = next(line for line in lines if "W4 layers on" in line)
    accuracy, costs, adds = tables
    return "\n\n".join(["\n".join(accuracy), "\n".join(costs),
                        heading + "\n\n" + "\n".join(adds), summary])


def digits_block() -> str:
    import contextlib
    import io
    import runpy

    example = runpy.run_path(str(ROOT / "examples" / "train_binary_digits.py"))
    with contextlib.redirect_stdout(io.StringIO()):
        table = example["main"]([])
    rows = ["| activations of binarized convs | trained % | deployed, integer % "
            "| integer == fake-quant |", "|---|---|---|---|"]
    for r in table.itertuples():
        trained = f"{100 * r.mean_acc:.2f} ± {100 * r.std_acc:.2f}"
        if r.images:
            rows.append(f"| {r.activations} | {trained} | {100 * r.int_acc:.2f} "
                        f"| {r.agree}/{r.images} |")
        else:
            rows.append(f"| {r.activations} | {trained} | – | – |")
    return "\n".join(rows)


def minilm_block() -> str:
    from hwsim.minilm_flow import minilm_cosines, quantize_minilm

    rows = ["| weights | activations into linears/matmuls | residual stream | calibration steps "
            "| cosine to float, mean (min) | fake-quant | int vs fake |",
            "|---|---|---|---|---|---|---|"]
    for weight_bits, residual_bits, steps in ((8, 16, True), (8, 16, False), (4, 16, True),
                                              (8, 8, True)):
        table = minilm_cosines(quantize_minilm(weight_bits=weight_bits,
                                               residual_bits=residual_bits, smooth=steps,
                                               split_outliers=steps))
        rows.append(f"| int{weight_bits} | int8 | int{residual_bits} "
                    f"| {'smooth + split' if steps else 'none'} "
                    f"| {table['int_vs_float'].mean():.4f} ({table['int_vs_float'].min():.4f}) "
                    f"| {table['fake_vs_float'].mean():.4f} | {table['int_vs_fake'].mean():.4f} |")
    return "\n".join(rows)


def _script_output(*parts: str) -> str:
    return subprocess.run([sys.executable, str(ROOT.joinpath(*parts))], cwd=ROOT,
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


def bitfusion_block() -> str:
    out = _script_output("examples", "bitfusion_mobilenet.py").rstrip("\n").splitlines()
    split = next(i for i, line in enumerate(out) if line.startswith("precision"))
    per_layer, summary = out[:split], out[split:]
    return ("```text\n" + "\n".join(summary) + "\n```\n\n<details><summary>Per layer "
            "(cycles and energy at each precision)</summary>\n\n```text\n" + "\n".join(per_layer)
            + "\n```\n</details>")


def bitserial_block() -> str:
    out = _script_output("bench", "bench_bit_serial.py").splitlines()
    table = out[:next(i for i, line in enumerate(out) if line.startswith("wall time")) - 1]
    return "```text\n" + "\n".join(table) + "\n```"


def zigzag_block() -> str:
    return "```text\n" + _script_output("bench", "bench_zigzag.py").rstrip("\n") + "\n```"


def _without_wall_times(script: str) -> str:
    """A co-design example's output without its wall times (they vary run to run)."""
    text = _script_output("examples", script).rstrip("\n")
    text = re.sub(r"; prepared in \d+ s", "", text)
    text = re.sub(r"; solver (\w+) in [0-9.]+ s", r"; solver \1", text)
    text = re.sub(r"; total \d+ s", "", text)
    return "```text\n" + text + "\n```"


def codesign_block() -> str:
    return _without_wall_times("codesign_mobilenet.py")


def multipoint_block() -> str:
    import numpy as np

    from quant.formats.multipoint import MultipointFormat, fit_multipoint_ladder

    w = np.random.default_rng(2021).standard_normal((64, 1152))
    norm = np.linalg.norm(w)
    points = 4
    rows = ["| points' width | scale search | " + " | ".join(f"n = {n}" for n in
                                                             range(1, points + 1)) + " |",
            "|---|---|" + "---|" * points]
    for bits in (4, 3, 2):
        # Cell n: a fit of max_points = n.  A grid fit of n points is the first n of its 4-point
        # ladder; the default picks each channel's ladder (exact or grid) by its residual at
        # max_points, so its cells are separate fits.
        grid = fit_multipoint_ladder(w, MultipointFormat(bits, points, search="grid"))
        default = [fit_multipoint_ladder(w, MultipointFormat(bits, n)) for n in
                   range(1, points + 1)]
        for label, residuals in (("400-point grid", [grid.residual(n) for n in
                                                     range(1, points + 1)]),
                                 ("best of exact and grid (default)",
                                  [ladder.residual() for ladder in default])):
            errs = [np.linalg.norm(r) / norm for r in residuals]
            rows.append(f"| {bits} bits | {label} | " + " | ".join(f"{e:.4f}" for e in errs)
                        + " |")
    return "\n".join(rows)


PTQ_ROWS = (("int8", "none", "hwsim W8A8"), ("int8", "light", "hwsim W8A8 light"),
            ("int4, first and last int8", "none", "hwsim W4A8"),
            ("int4, first and last int8", "advanced", "hwsim W4A8 advanced"))


def ptq_block() -> str:
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    import bench_ptq

    torch.set_num_threads(1)
    case = bench_ptq.mobilenet_case()
    reference = bench_ptq.float_outputs(case)
    graph = bench_ptq.quant.capture(case.model, case.example)
    weighted = tuple(r.name for r in bench_ptq.weighted_records(graph))
    inp = bench_ptq.PTQInput(case.model, case.hwsim_batches, case.example,
                             bench_ptq.quant.QuantConfig(), weighted, case.groups)
    recipes = {**bench_ptq.RECIPES, **bench_ptq.PIPELINE_RECIPES}
    rows = ["| weights | calibration | top-1 agreement | top-5 "
            "containment | logit SQNR (dB) | KL (nats) |", "|---|---|---|---|---|---|"]
    for weights, calibration, name in PTQ_ROWS:
        r = bench_ptq.hwsim_row(case, reference, name, recipes[name], inp)
        rows.append(f"| {weights} | {calibration} | {r['top1']:.2f} | {r['top5']:.2f} "
                    f"| {r['sqnr_db']:.2f} | {r['kl']:.4f} |")
    return "\n".join(rows)


def gallery_block() -> str:
    import onnxruntime
    import torch

    sys.path.insert(0, str(ROOT))
    from tests import _gallery

    torch.set_num_threads(1)
    onnxruntime.set_default_logger_severity(3)
    return _gallery.table()


BLOCKS = {"demo": demo_block, "apot": apot_block, "digits": digits_block,
          "minilm": minilm_block, "bitfusion": bitfusion_block, "bitserial": bitserial_block,
          "zigzag": zigzag_block, "codesign": codesign_block, "multipoint": multipoint_block,
          "ptq": ptq_block, "gallery": gallery_block}


def _block_in_fresh_process(name: str) -> str:
    """Each block computed by its own interpreter: an example run before it in the same process
    (torch's thread and RNG state) must not change its figures."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--emit", name],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"block {name!r} failed:\n{out.stderr[-3000:]}")
    return out.stdout.split(_EMIT_MARK, 1)[1].rstrip("\n")


_EMIT_MARK = "<<<readme-figures>>>\n"


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- figures:{name} -->\n)(.*?)(<!-- /figures:{name} -->)", re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blocks", nargs="*", metavar="BLOCK",
                        help=f"which blocks ({', '.join(BLOCKS)}; default: all)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if stale")
    parser.add_argument("--emit", metavar="BLOCK", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit:
        text = BLOCKS[args.emit]()
        sys.stdout.write(_EMIT_MARK + text + "\n")
        return 0
    text = README.read_text()
    stale = False
    unknown = sorted(set(args.blocks) - set(BLOCKS))
    if unknown:
        parser.error(f"unknown blocks {unknown}; known: {list(BLOCKS)}")
    for name in args.blocks or list(BLOCKS):
        match = _pattern(name).search(text)
        if match is None:
            raise SystemExit(f"README.md has no <!-- figures:{name} --> block")
        fresh = _block_in_fresh_process(name) + "\n"
        if fresh != match.group(2):
            stale = True
            sys.stdout.writelines(difflib.unified_diff(
                match.group(2).splitlines(True), fresh.splitlines(True),
                f"README.md ({name}, as committed)", f"README.md ({name}, as printed now)"))
            text = text[:match.start(2)] + fresh + text[match.end(2):]
    if args.check:
        return 1 if stale else 0
    README.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

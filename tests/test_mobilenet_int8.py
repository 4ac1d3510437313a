"""MobileNetV2 with its ImageNet weights, int8 per-channel: the integer program matches the
fake-quant model within 1 LSB at every layer, and agrees with the float model on top-1."""
import pytest

from hwsim.cli import main
from hwsim.flows import quantize_zoo_model
from hwsim.verify import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow():
    return quantize_zoo_model("mobilenet_v2", bits=8)


@pytest.mark.parametrize("requant", ["dyadic", "float32"])
def test_every_layer_within_one_lsb_and_top1_reported(flow, requant):
    from hwsim.lower import lower

    program = flow.program if requant == "dyadic" else lower(flow.qm, requant="float32")
    report = verify(flow.qm, program, flow.eval_images[:20])
    rows = report.per_layer
    assert len(rows) == 52 + 1 + 10 + 1  # 52 convs, the classifier, 10 adds, the average pool
    assert rows["max_lsb_diff"].max() <= 1, rows.to_string()
    # Integer and float requantization disagree only on rare rounding boundaries.
    assert rows["mismatch_pct"].max() < 0.1, rows.to_string()
    assert report.summary["total_overflows"] == 0
    s = report.summary
    print(f"\n{requant}: top-1 int vs float {s['top1_agreement_int_vs_float']:.2f}, fake vs float "
          f"{s['top1_agreement_fake_vs_float']:.2f}, int vs fake {s['top1_agreement_int_vs_fake']:.2f}; "
          f"output SQNR int vs float {s['output_sqnr_db_int_vs_float']:.1f} dB")
    assert s["top1_agreement_int_vs_float"] >= 0.6


def test_cli_verify_prints_the_table_and_its_saved_program_costs_like_the_builtin(tmp_path, capsys):
    import json

    saved = tmp_path / "mnv2"
    assert main(["verify", "--model", "mobilenet_v2", "--bits", "8", "--images", "3",
                 "--save-program", str(saved), "--acc-report"]) == 0
    out = capsys.readouterr().out
    for needle in ("features.0.0", "classifier.1", "max_lsb_diff", "sqnr_db",
                   "top1_agreement_int_vs_float", "layers_bit_exact", "never_overflow_bits",
                   "needed_bits"):
        assert needle in out
    # The captured real model and the built-in workload generator describe the same network.
    hw = "hw_configs/int8_systolic.yaml"
    costs = {}
    for model in (str(saved) + ".json", "mobilenet_v2"):
        js = tmp_path / "cost.json"
        assert main(["simulate", "--hw", hw, "--model", model, "--json", str(js)]) == 0
        doc = json.loads(js.read_text())
        costs[model] = {r["name"]: (r["macs"], r["compute_cycles"]) for r in doc["per_layer"]}
    program_cost, builtin_cost = costs.values()
    assert program_cost == builtin_cost

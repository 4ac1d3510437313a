"""Fuzzing the user-facing inputs through the CLI entry point, in-process.

Mutated YAML accelerator configs, SCALE-Sim .cfg files, SCALE-Sim topology CSVs and ``--set``
strings go through ``hwsim.cli.main.main``. The property, for every input:

- exit status 0: every figure of the ``--json`` output (per layer and summary) is a finite,
  non-negative number; or
- exit status 2: stderr holds one line ``hwsim <command>: error: ...`` -- or, for several
  problems, that line followed by one indented line per further problem (when the first line ends
  in ``(N errors)``, exactly N - 1 of them);
- never an exception escaping ``main`` (numpy RuntimeWarnings are raised as errors too), never
  another exit status.

Budget: `BUDGETS` examples in all (>= 5,000), derandomized so CI sees the same inputs every run.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "hw_configs"
# configs that run int layers (hetero_int8_xnor / binary_xnor refuse them, whatever the input)
BASE_YAMLS = ("int8_systolic.yaml", "shift_add_apot.yaml", "hetero_int8_apot.yaml",
              "int8_systolic_ws_16x16.yaml")
HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
          "Num Filter, Strides,")
SMALL_TOPOLOGY = (HEADER + "\nconv1, 18, 18, 3, 3, 8, 16, 1,\nconv2_DP, 16, 16, 3, 3, 16, 1, 2,\n"
                  "fc, 1, 1, 1, 1, 64, 10, 1,\n")
TEXT_KEYS = {"name", "kind", "unit", "weight_format", "act_format", "accelerator", "convention",
             "loop_order", "objective"}

BUDGETS = {"yaml": 2000, "cfg": 1200, "csv": 1500, "set": 1000}


def fuzz_settings(budget: int) -> settings:
    return settings(max_examples=budget, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    (path / "small.csv").write_text(SMALL_TOPOLOGY)
    return path


# The property ----------------------------------------------------------------------------------
def run_and_check(argv: list[str], json_path: Path) -> int:
    """Run the CLI on `argv` (which writes `json_path` on success) and check the property."""
    json_path.unlink(missing_ok=True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc = main([*argv, "--json", str(json_path)])
    stderr = err.getvalue()
    assert "Traceback" not in stderr, stderr
    if rc == 0:
        check_figures(json.loads(json_path.read_text()))
        return rc
    assert rc == 2, (rc, stderr)
    check_error_lines(stderr, argv[0])
    return rc


def check_figures(doc: dict) -> None:
    rows = [*doc["per_layer"], doc["summary"]]
    assert doc["per_layer"]
    for row in rows:
        for key, value in row.items():
            if key in TEXT_KEYS:
                continue
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
            assert math.isfinite(value) and value >= 0, (key, value, row.get("name"))


def check_error_lines(stderr: str, command: str) -> None:
    assert stderr.endswith("\n"), repr(stderr)
    first, *rest = stderr[:-1].split("\n")
    assert first.startswith(f"hwsim {command}: error: "), stderr
    assert len(first) > len(f"hwsim {command}: error: ") + 5, stderr
    assert all(line.startswith("  ") and line.strip() for line in rest), stderr
    count = re.search(r"\((\d+) errors?\)$", first)
    if count:
        assert int(count.group(1)) == 1 + len(rest), stderr


# Values ----------------------------------------------------------------------------------------
EXTREME_NUMBERS = [0, -1, 1, 3, 7, 8, 2**31, 2**31 + 1, 2**53, 2**63, 2**64, 10**30, -10**30,
                   math.inf, -math.inf, math.nan, 1e308, -0.0, 1e-300, 0.5, 3.7, 1e-7, 1e12,
                   1e13]
WEIRD = st.one_of(
    st.sampled_from(EXTREME_NUMBERS),
    st.sampled_from([True, False, None, "abc", "", "unlimited", "os", "ws", "is", [], [1],
                     ["ifmap"], ["ifmap", "ifmap"], {}, {"a": 1}, "1e30", "systolic", "int"]),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
PLAUSIBLE_TEXT = st.one_of(st.integers(1, 128).map(str),
                           st.sampled_from(["os", "ws", "is", "0.5", "16", "64", "unlimited",
                                            "[ifmap]", "[ifmap, filter, ofmap]", "40.0"]))
SCALAR_TEXT = st.one_of(
    PLAUSIBLE_TEXT, PLAUSIBLE_TEXT, PLAUSIBLE_TEXT,
    st.sampled_from(["0", "-1", "1", "64", "2147483648", "2147483649", "1" * 30, "9" * 5000,
                     ".inf", "-.inf", ".nan", "1e308", "1.0e+308", "1e-3", "abc", "ws", "",
                     "unlimited", "[1, 2", "{a: 1, a: 2}", "[ifmap]", "null", "true", "0x10",
                     "!!python/object:os.system", "&a [*a]", "'", "\"", "\t", "- x"]),
    st.integers(min_value=-2**66, max_value=2**66).map(str),
    st.text(max_size=12),
)


def _paths(node, prefix=()):
    """Every key path into nested dicts/lists (lists indexed by position)."""
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else ())
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _parent(raw, path):
    node = raw
    for key in path[:-1]:
        node = node[key]
    return node


def _typo(data, word: str) -> str:
    if not word:
        return "x"
    i = data.draw(st.integers(0, len(word) - 1))
    kind = data.draw(st.sampled_from(["drop", "swap", "add", "case"]))
    if kind == "drop":
        return word[:i] + word[i + 1:] or "x"
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "case":
        return word.upper()
    return word[:i] + data.draw(st.sampled_from("aeiouzx_")) + word[i:]


def _text_mutation(data, text: str) -> bytes:
    """Byte-level damage: none mostly; else duplicate a line, insert garbage, truncate, binary."""
    kind = data.draw(st.sampled_from(["none"] * 12 + ["dup", "garbage", "truncate", "binary",
                                                       "nul", "bom"]))
    lines = text.splitlines(keepends=True)
    if kind == "dup" and lines:
        i = data.draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        return "".join(lines).encode()
    if kind == "garbage":
        i = data.draw(st.integers(0, len(text)))
        junk = data.draw(st.sampled_from([":", "- ", "[", "{", "\t", "%", "&a", "*b", "!!",
                                          "'", "\n  x: 1\n", "\xff", "é", "\u2028"]))
        return (text[:i] + junk + text[i:]).encode()
    if kind == "truncate":
        return text[:data.draw(st.integers(0, len(text)))].encode()
    if kind == "binary":
        return data.draw(st.binary(min_size=0, max_size=200))
    if kind == "nul":
        i = data.draw(st.integers(0, len(text)))
        return (text[:i] + "\x00" + text[i:]).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    return text.encode()


# 1. YAML accelerator configs -------------------------------------------------------------------
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mutate_yaml(data) -> bytes:
    """A shipped config with 0-3 structural mutations, then maybe byte-level damage. Half the
    mutations "tweak" a number to an extreme that may still be valid (2^31 rows, 1e12 B/cycle):
    those configs get through validation and exercise the cost arithmetic."""
    base = data.draw(st.sampled_from(BASE_YAMLS))
    raw = yaml.safe_load((CONFIGS / base).read_text())
    for _ in range(data.draw(st.integers(0, 3))):
        action = data.draw(st.sampled_from(["tweak"] * 5 + ["drop", "retype", "rename", "add",
                                                           "scale"]))
        paths = list(_paths(raw))
        if action == "tweak":
            paths = [p for p in paths if _is_number(_parent(raw, p)[p[-1]])]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent, key = _parent(raw, path), path[-1]
        if action == "tweak":
            old = parent[key]
            parent[key] = data.draw(st.one_of(
                st.sampled_from(EXTREME_NUMBERS),
                st.sampled_from([2**20, 2**31, 2**40, 1e9, 1e12, 1e-6, 1e-3, 8, 16, 256, 512,
                                 65536, 65544]),
                st.integers(1, 4096),
                st.just(old * 2 if isinstance(old, int) else old / 7)))
        elif action == "drop":
            del parent[key]
        elif action == "retype":
            parent[key] = copy.deepcopy(data.draw(WEIRD))  # never mutate the shared pool
        elif action == "scale" and _is_number(parent[key]):
            parent[key] = parent[key] * data.draw(st.sampled_from([2**20, 2**40, 10**30, -1,
                                                                   0, 1e-9, 1e300]))
        elif action == "rename" and isinstance(parent, dict):
            parent[_typo(data, str(key))] = parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["rowz", "clock_mz", "extra", "holds", "kind",
                                              "1", "dram"]))] = copy.deepcopy(data.draw(WEIRD))
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    return _text_mutation(data, text)


def test_fuzz_yaml_configs(workdir):
    seen = []

    @fuzz_settings(BUDGETS["yaml"])
    @given(st.data())
    def run(data):
        hw = workdir / "config.yaml"
        hw.write_bytes(mutate_yaml(data))
        seen.append(run_and_check(["cost", "--hw", str(hw), "--topology",
                                   str(workdir / "small.csv")], workdir / "yaml.json"))

    run()
    assert len(seen) >= BUDGETS["yaml"] * 0.95
    assert 0 in seen and 2 in seen  # both outcomes are exercised


# 2. SCALE-Sim .cfg files ----------------------------------------------------------------------
CFG_KEYS = {"ArrayHeight": "32", "ArrayWidth": "32", "IfmapSramSzkB": "64",
            "FilterSramSzkB": "64", "OfmapSramSzkB": "32", "IfmapOffset": "0",
            "FilterOffset": "10000000", "OfmapOffset": "20000000", "Bandwidth": "10",
            "Dataflow": "os", "ReadRequestBuffer": "32"}
CFG_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "7", "128", "tall", "", "1e30", "1" * 30, "9" * 5000,
                     "inf", "nan", "1.5", "10%", "%(x)s", "2147483648", "1073741825",
                     "ws", "is", "OS", "rs", "10, 20", "abc, 1", "0.000001", "1e-9", "1e12"]),
    st.integers(min_value=-2**64, max_value=2**64).map(str),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"),
            max_size=8),
)


def mutate_cfg(data) -> bytes:
    values = dict(CFG_KEYS)
    for key in data.draw(st.lists(st.sampled_from(sorted(CFG_KEYS)), max_size=4)):
        if data.draw(st.booleans()):
            values.pop(key, None)
        else:
            values[key] = data.draw(CFG_VALUES)
    mode = data.draw(st.sampled_from(["CALC", "USER", "USER", "calc", "FAST", "", None]))
    sections = [("general", {"run_name": data.draw(st.sampled_from(["run", "", "x" * 300]))}),
                ("architecture_presets", values)]
    if mode is not None:
        sections.append(("run_presets", {"InterfaceBandwidth": mode}))
    if data.draw(st.integers(0, 9)) == 0:
        sections.pop(data.draw(st.integers(0, len(sections) - 1)))
    sep = data.draw(st.sampled_from([" = ", ": ", "="]))
    text = "".join(f"[{name}]\n" + "".join(f"{k}{sep}{v}\n" for k, v in body.items()) + "\n"
                   for name, body in sections)
    return _text_mutation(data, text)


def test_fuzz_scalesim_cfg(workdir):
    seen = []

    @fuzz_settings(BUDGETS["cfg"])
    @given(st.data())
    def run(data):
        hw = workdir / "config.cfg"
        hw.write_bytes(mutate_cfg(data))
        seen.append(run_and_check(["cost", "--hw", str(hw), "--topology",
                                   str(workdir / "small.csv")], workdir / "cfg.json"))

    run()
    assert len(seen) >= BUDGETS["cfg"] * 0.95
    assert 0 in seen and 2 in seen


# 3. Topology CSVs ------------------------------------------------------------------------------
CELL = st.one_of(
    st.integers(1, 64).map(str),
    st.sampled_from(["0", "-1", "1" * 30, "1000000000", "2147483648", "2147483649", "65536",
                     "3.0", "1e30", "ten", "", " ", "1:1", "2:4", "9" * 5000, "\"1,2\"", "#dw"]),
    st.integers(min_value=-2**64, max_value=2**64).map(str),
    st.text(max_size=6),
)


@st.composite
def valid_row(draw) -> list[str]:
    """A row SCALE-Sim accepts (sizes up to 2^31: large ones are the cost model's problem)."""
    small = st.integers(1, 64)
    size = st.one_of(small, small, small, small, small, small,
                     st.sampled_from([1000, 2**16, 2**20, 10**9, 2**31]))
    in_h, in_w = draw(size), draw(size)
    f_h, f_w = draw(st.integers(1, min(in_h, 7))), draw(st.integers(1, min(in_w, 7)))
    name = draw(st.sampled_from(["conv", "c_DP", "DP", "fc", "layer 1", "é"]))
    cells = [name, in_h, in_w, f_h, f_w, draw(size), draw(size), draw(st.integers(1, 4))]
    return [str(c) for c in cells]


@st.composite
def weird_row(draw) -> list[str]:
    cells = draw(valid_row())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "replace", "drop", "extra"]))
        i = draw(st.integers(0, len(cells) - 1)) if cells else 0
        if action == "replace" and cells:
            cells[i] = draw(CELL)
        elif action == "drop" and cells:
            cells.pop(i)
        else:
            cells.append(draw(CELL))
    return cells


def mutate_csv(data) -> bytes:
    header = data.draw(st.sampled_from(
        [HEADER] * 8 + [HEADER.lower(), HEADER.replace("Strides", "Stride height"),
                        HEADER + " Target", "a,b,c,d,e,f,g,h,", "", "Layer name, IFMAP Height,",
                        "conv0, 10, 10, 3, 3, 4, 4, 1,"]))
    rows = data.draw(st.lists(st.one_of(valid_row(), valid_row(), valid_row(), weird_row()),
                              min_size=1, max_size=5))
    trailing = data.draw(st.sampled_from([",", "", ", ,"]))
    sep = data.draw(st.sampled_from([", ", ","]))
    text = header + "\n" + "".join(sep.join(r) + trailing + "\n" for r in rows)
    return _text_mutation(data, text)


def test_fuzz_topology_csv(workdir):
    seen = []

    @fuzz_settings(BUDGETS["csv"])
    @given(st.data())
    def run(data):
        topo = workdir / "topology.csv"
        topo.write_bytes(mutate_csv(data))
        seen.append(run_and_check(["cost", "--hw", str(CONFIGS / "int8_systolic.yaml"),
                                   "--topology", str(topo)], workdir / "csv.json"))

    run()
    assert len(seen) >= BUDGETS["csv"] * 0.95
    assert 0 in seen and 2 in seen


# 4. --set strings ------------------------------------------------------------------------------
def _override_paths(base: str) -> list[str]:
    raw = yaml.safe_load((CONFIGS / base).read_text())
    return [".".join(map(str, p)) for p in _paths(raw)
            if not any(isinstance(k, int) for k in p)]


OVERRIDE_PATHS = {base: _override_paths(base) for base in ("int8_systolic.yaml",
                                                            "hetero_int8_apot.yaml")}


def _numeric_paths(base: str) -> list[str]:
    raw = yaml.safe_load((CONFIGS / base).read_text())
    return [p for p in OVERRIDE_PATHS[base]
            if isinstance(_get(raw, p.split(".")), (int, float))
            and not isinstance(_get(raw, p.split(".")), bool)]


def _get(raw, keys):
    for key in keys:
        raw = raw[key]
    return raw


NUMERIC_PATHS = {base: _numeric_paths(base) for base in OVERRIDE_PATHS}


def draw_override(data, base: str) -> str:
    kind = data.draw(st.sampled_from(["numeric"] * 6 + ["path"] * 6 + ["typo", "garbage",
                                                                       "noequals"]))
    if kind == "numeric":
        path = data.draw(st.sampled_from(NUMERIC_PATHS[base]))
        value = data.draw(st.one_of(st.integers(1, 256), st.floats(0.001, 1e4),
                                    st.sampled_from(EXTREME_NUMBERS)))
        return f"{path}={value}"
    path = data.draw(st.sampled_from(OVERRIDE_PATHS[base]))
    if kind == "typo":
        path = _typo(data, path)
    elif kind == "garbage":
        return data.draw(st.text(max_size=20))
    elif kind == "noequals":
        return path
    return f"{path}={data.draw(SCALAR_TEXT)}"


def test_fuzz_set_overrides(workdir):
    seen = []

    @fuzz_settings(BUDGETS["set"])
    @given(st.data())
    def run(data):
        base = data.draw(st.sampled_from(sorted(OVERRIDE_PATHS)))
        overrides = [f"--set={draw_override(data, base)}"
                     for _ in range(data.draw(st.integers(1, 2)))]
        command = data.draw(st.sampled_from(["cost", "cost", "simulate"]))
        hw = ["--hw", str(CONFIGS / base)]
        if command == "cost":
            argv = ["cost", *hw, "--topology", str(workdir / "small.csv")]
        else:
            batch = data.draw(st.sampled_from(["1", "1", "2", "1000000", str(2**31), str(2**40)]))
            model = data.draw(st.sampled_from(["resnet18", "mobilenet_v2"]))
            argv = ["simulate", *hw, "--model", model, "--batch", batch]
        seen.append(run_and_check([*argv, *overrides], workdir / "set.json"))

    run()
    assert len(seen) >= BUDGETS["set"] * 0.95
    assert 0 in seen and 2 in seen


def test_budget_is_at_least_5000():
    assert sum(BUDGETS.values()) >= 5000

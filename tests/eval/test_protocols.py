"""``--protocol`` presets: values, explicit flags win, unknown names refused. Pure Python, instant."""

import pytest

from eksft import cli
from eksft.commands.eval import resolved_settings
from eksft.eval.protocols import PROTOCOLS, resolve


def test_presets_have_the_documented_values():
    assert PROTOCOLS["paper"] == {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "n": 32,
        "k": [1, 8, 32],
        "max_new_tokens": 8192,
        "instruction": "Please reason step by step, and put your final answer within \\boxed{}.",
    }
    r1 = PROTOCOLS["r1"]
    assert (r1["temperature"], r1["top_p"], r1["n"], r1["max_new_tokens"]) == (0.6, 0.95, 64, 32768)
    assert r1["instruction"] == PROTOCOLS["paper"]["instruction"]  # R1 uses the same instruction


def parse(*argv):
    return cli.build_parser().parse_args(["eval", "m", "--benchmark", "arithmetic-easy", "--output-dir", "x", *argv])


def test_explicit_flags_override_a_preset():
    r = resolved_settings(parse("--protocol", "r1", "--n", "4", "--k", "1,4"))
    assert (r["temperature"], r["top_p"], r["n"], r["k"], r["max_new_tokens"]) == (0.6, 0.95, 4, [1, 4], 32768)
    r = resolved_settings(parse("--temperature", "0.7"))  # no preset: the paper's values are the defaults
    assert (r["temperature"], r["n"], r["k"], r["top_p"]) == (0.7, 32, [1, 8, 32], 1.0)
    r = resolve("paper", {"n": 4, "k": None, "instruction": "Answer:"})  # None = flag not given: the preset's value
    assert (r["n"], r["k"], r["instruction"], r["max_new_tokens"]) == (4, [1, 8, 32], "Answer:", 8192)


def test_library_errors_name_the_config_field():
    """Python callers read EvalConfig's fields; `eksft eval` prints its flags
    (test_eval_cli: "--k [8] exceeds --n 4")."""
    from eksft.eval.runner import EvalConfig
    from eksft.eval.sampling import SamplingConfig

    cfg = EvalConfig(models=["m"], benchmarks=["b"], output_dir="x", ks=[1, 8], sampling=SamplingConfig(n=4))
    with pytest.raises(
        ValueError,
        match=r"^EvalConfig\.ks \[8\] exceeds EvalConfig\.sampling\.n 4: .* raise "
        r"EvalConfig\.sampling\.n to 8",
    ):
        cfg.validate()
    with pytest.raises(ValueError, match=r"^EvalConfig\.protocol 'nope': choose one of paper, r1"):
        resolve("nope", {})

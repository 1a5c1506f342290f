"""``eksft compare`` on result folders written from synthetic samples (no model): the paired table and sentence,
per-problem tables in results.json, refusals naming the difference (exit 2), several seeds with a t-interval, and
the pass@k PNG with bands. CPU only, about two seconds (matplotlib import dominates).
"""

import json

import pytest

from eksft import cli
from eksft.eval.report import paired_comparisons, summarize, write_outputs
from tests.eval.test_intervals import TABLE_A, TABLE_B, lines_for

SETTINGS = {
    "sampling": {
        "n": 8,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": 64,
        "batch_size": 8,
        "chat_template": True,
        "instruction": "box it",
    },
    "seed": 0,
    "extraction": "last_boxed",
}


def folder(path, tables: dict, ks=(1, 4, 8), **settings):
    """An eksft eval output folder with one model per entry of ``tables`` on benchmark b."""
    path.mkdir(parents=True, exist_ok=True)
    results = {"b": {m: summarize(lines_for(t, m), list(ks)) for m, t in tables.items()}}
    config = {"models": list(tables), "ks": list(ks), **json.loads(json.dumps(SETTINGS))}
    for key, value in settings.items():
        (config if key == "extraction" else config["sampling"])[key] = value
    write_outputs(path, results, config, paired_comparisons(results, list(ks)))
    return str(path)


def test_compare_prints_paired_differences_and_writes_json(tmp_path, capsys):
    a = folder(tmp_path / "sft", {"runs/sft/final": TABLE_A})
    b = folder(tmp_path / "eksft", {"runs/eksft/final": TABLE_B})
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", a, b, "--label-a", "SFT", "--label-b", "EKSFT", "--output-json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "### b (7 problems)" in text and "| pass@8 |" in text and "2000 resamples, seed 0" in text
    assert "EKSFT − SFT on pass@1: +" in text and "95% interval [" in text
    data = json.loads(out.read_text())
    rows = data["benchmarks"]["b"]["seeds"][0]
    assert [r["metric"] for r in rows] == ["pass@1", "pass@4", "pass@8"]
    assert rows[0]["low"] <= rows[0]["difference"] <= rows[0]["high"] and 0 <= rows[0]["share_b_greater"] <= 1
    # eksft eval's own comparison in one folder gives the same numbers as eksft compare over two
    both = folder(tmp_path / "both", {"runs/sft/final": TABLE_A, "runs/eksft/final": TABLE_B})
    saved = json.loads((tmp_path / "both" / "results.json").read_text())["comparisons"]["b"]
    assert [d["low"] for d in saved] == pytest.approx([r["low"] for r in rows], abs=1e-12)
    assert "paired comparison with sft/final" in (tmp_path / "both" / "table.md").read_text()
    assert cli.main(["compare", both, both, "--model-a", "sft", "--model-b", "eksft", "--output-json", str(out)]) == 0
    assert json.loads(out.read_text())["benchmarks"]["b"]["seeds"][0][1]["high"] == pytest.approx(rows[1]["high"])


def test_model_against_itself_and_all_against_none(tmp_path, capsys):
    a = folder(tmp_path / "a", {"m": TABLE_A})
    assert cli.main(["compare", a, a, "--k", "1"]) == 0
    assert "not distinguishable at this size (7 problems)" in capsys.readouterr().out
    none = folder(tmp_path / "none", {"base": [(8, 0)] * 5})
    every = folder(tmp_path / "every", {"tuned": [(8, 8)] * 5})
    assert cli.main(["compare", none, every]) == 0
    assert (
        "tuned − base on pass@8: +100.0 points, 95% interval [+100.0, +100.0]: tuned higher" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("b_tables", "b_settings", "message"),
    [
        ({"m": TABLE_B[:5]}, {}, r"different problem sets: 2 problem\(s\) only in A \(p5, p6\)"),
        ({"m": TABLE_B}, {"temperature": 0.6}, "temperature is 1.0 in A .* and 0.6 in B"),
        ({"m": TABLE_B}, {"extraction": "last_number"}, "extraction is 'last_boxed' in A"),
        ({"m": [(4, 1)] * 7}, {"n": 4}, r"different samples per problem \(problem p0: n 8 in A, 4 in B\)"),
    ],
)
def test_refuses_to_pair_different_folders(tmp_path, capsys, b_tables, b_settings, message):
    a = folder(tmp_path / "a", {"m": TABLE_A})
    b = folder(tmp_path / "b", b_tables, ks=(1, 4), **b_settings)
    assert cli.main(["compare", a, b]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eksft compare: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_ignore_setting_and_other_refusals(tmp_path, capsys):
    a = folder(tmp_path / "a", {"m": TABLE_A})
    b = folder(tmp_path / "b", {"m": TABLE_B}, temperature=0.6)
    assert cli.main(["compare", a, b, "--ignore-setting", "temperature"]) == 0
    two = folder(tmp_path / "two", {"x": TABLE_A, "y": TABLE_B})
    assert cli.main(["compare", two, a]) == 2
    assert "holds 2 models (x, y); choose one with --model-a/--model-b" in capsys.readouterr().err
    assert cli.main(["compare", a, str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert cli.main(["compare", a, f"{a},{a}"]) == 2
    assert "1 folder(s) for A but 2 for B" in capsys.readouterr().err


def test_several_seeds_add_a_t_interval(tmp_path, capsys):
    a = [folder(tmp_path / f"a{i}", {"sft": TABLE_A[i:] + TABLE_A[:i]}) for i in range(3)]
    b = [folder(tmp_path / f"b{i}", {"eksft": TABLE_B[i:] + TABLE_B[:i]}) for i in range(3)]
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", ",".join(a), ",".join(b), "--k", "1,8", "--output-json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "over 3 seeds (mean, 95% Student-t interval over seeds)" in text
    assert "eksft − sft on pass@8 over 3 seeds:" in text
    seed_level = json.loads(out.read_text())["benchmarks"]["b"]["seed_level"]
    assert [r["metric"] for r in seed_level] == ["pass@1", "pass@8"] and "3 seeds" in seed_level[0]["method"]


def test_pass_at_k_png_has_bands(tmp_path):
    folder(
        tmp_path / "plot",
        {"runs/base": [(32, 0)] * 6, "runs/sft": [(32, c) for c in (0, 1, 3, 30, 5, 2)], "runs/eksft": [(32, 0)] * 6},
    )
    png = tmp_path / "plot" / "pass_at_k_b.png"
    assert png.is_file() and png.stat().st_size > 10_000


def test_answer_check_compares_the_stored_last_number_counts(tmp_path, capsys):
    """B boxes nothing but writes the right number everywhere: equal to A by the run's check, ahead by last number."""
    ka, kb = tmp_path / "a", tmp_path / "b"
    for path, model, ln in ((ka, "a", [0] * 7), (kb, "b", [8] * 7)):
        path.mkdir()
        lines = lines_for([(8, 0)] * 7, model, checks_last_number=ln)
        config = {"models": [model], "ks": [1], **SETTINGS}
        write_outputs(path, {"b": {model: summarize(lines, [1], extraction="last_boxed")}}, config)
    assert cli.main(["compare", str(ka), str(kb)]) == 0
    assert "b − a on pass@1: +0.0 points" in capsys.readouterr().out
    assert cli.main(["compare", str(ka), str(kb), "--answer-check", "last_number"]) == 0
    assert "b − a on pass@1: +100.0 points, 95% interval [+100.0, +100.0]: b higher" in capsys.readouterr().out

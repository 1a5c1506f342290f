"""The report's "Against ρ" section: which methods form a ρ sweep, the table's values and differences to SFT (checked
against the report's own cells and verdict arithmetic), and the plot file. Hand-made summaries, CPU, ~2 s."""

import copy

import pytest
from test_demo_report import seed_record  # tests/demo is on sys.path (no __init__.py)

import eksft.demo.report as report
from eksft.demo.rho_axis import rho_blocks, rho_sweep


def sweep_summary(seeds=3):
    """SFT and EKSFT at ρ 0.05 (pass@1 0.25), 0.1 (0.5) and the default 0.2 (plain `eksft`, 0.25), plus a method
    that changes another field (not part of the sweep)."""
    out = []
    for i in range(seeds):
        s = seed_record(i, 0.5, 0.25)
        e = s["eval"]["eksft"]
        s["eval"]["eksft[rho=0.05]"] = copy.deepcopy(e)
        s["eval"]["eksft[rho=0.1]"] = seed_record(i, 0.5, 0.5)["eval"]["eksft"]
        s["eval"]["eksft[variant=official]"] = copy.deepcopy(e)
        for label in ("eksft[rho=0.05]", "eksft[rho=0.1]", "eksft[variant=official]"):
            s["models"][label] = label
            s["runs"][label] = {"train_seconds": 70.0, "run_dir": label}
            s["heldout"][label] = copy.deepcopy(s["heldout"]["eksft"])
            s["drift"][label] = {"0.001": 0.3}
        out.append(s)
    return {"config": {"samples": 4, "rho": 0.2, "task": "arithmetic-easy"}, "seeds": out}


def test_sweep_takes_eksft_methods_that_differ_only_in_rho():
    s = sweep_summary()
    assert rho_sweep(s) == {0.05: "eksft[rho=0.05]", 0.1: "eksft[rho=0.1]", 0.2: "eksft"}
    one = sweep_summary()
    for seed in one["seeds"]:
        for label in ("eksft[rho=0.05]", "eksft[rho=0.1]"):
            del seed["runs"][label]
    assert rho_sweep(one) == {}  # one ρ is no axis
    assert rho_blocks(one, None) == []


@pytest.mark.parametrize("seeds", [1, 3])
def test_table_values_and_differences_to_sft(tmp_path, seeds):
    s = sweep_summary(seeds)
    blocks = rho_blocks(s, tmp_path)
    assert blocks[0] == ("h2", "Against ρ")
    (_, header, rows), (_, image, _) = blocks[2], blocks[3]
    assert header[-1] == "pass@4 − sft (points)"
    assert [r[0] for r in rows] == ["0.05", "0.1", "0.2"]
    # pass@1 of ρ 0.1 is 0.5 in every seed, so its cell is 0.500 with a zero-width interval over seeds, or the
    # seed's own bootstrap interval (the hand-made 0.4-0.6) with one seed
    assert rows[1][2] == ("0.500 [0.500, 0.500]" if seeds == 3 else "0.500 [0.400, 0.600]")
    # pass@4 is 1 on every problem for SFT and every EKSFT here: the difference to SFT is exactly 0 points
    assert all(r[-1].startswith("+0.0") for r in rows)
    assert image.exists() and image.stat().st_size > 10_000


def test_report_places_the_section_after_the_results(monkeypatch, tmp_path):
    """report.blocks calls rho_blocks with the run's summary and plot folder (the rest of the report is stubbed)."""
    seen = []
    monkeypatch.setattr(report, "rho_blocks", lambda summary, plots: seen.append(plots) or [("h2", "Against ρ")])
    s = sweep_summary(1)
    from eksft.demo.run import machine

    s.update(machine=machine(), base_model="b", wall_seconds=60.0, peak_rss_gb=1.0)
    s["config"].update(
        methods=["sft", "eksft"],
        train_size=8,
        steps=2,
        batch_size=2,
        learning_rate=1e-4,
        lambda_entropy=0.05,
        lambda_kl=0.05,
        eval_problems=20,
        max_new_tokens=8,
        quick=False,
    )
    from dataclasses import asdict

    from eksft.demo.config import DemoConfig

    s["config"] = {**asdict(DemoConfig()), **s["config"]}  # every field the header reads, with its default
    titles = [b[1] for b in report.blocks(s, tmp_path) if b[0] == "h2"]
    assert seen == [tmp_path / "plots"]
    assert titles.index("Against ρ") == titles.index("Results") + 1

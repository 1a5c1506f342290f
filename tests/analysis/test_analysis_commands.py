"""``eksft drift``, ``eksft probe`` and ``eksft masks`` on tiny random Llamas built offline: known drift shares,
probabilities that agree with a direct forward pass, EKSFT masks from ``eksft_loss``, and metrics.jsonl parsing.

CPU only; about 10 s on 2 cores (mostly the transformers import and three tiny model loads).
"""

import json

import pytest
import torch

from eksft import cli
from eksft.analysis.drift import module_type
from eksft.analysis.masks import read_run
from eksft.models.loading import load_model_and_tokenizer
from eksft.models.tiny import save_tiny as save_tiny_random_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A base and two 'tuned' copies: every element scaled by (1 + s*z), z ~ N(0, 1), s = 1e-2 and 1e-3."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("analysis")
    base = save_tiny_random_model(root / "base", seed=0)
    paths = [str(base)]
    for name, scale in (("big", 1e-2), ("small", 1e-3)):
        model = AutoModelForCausalLM.from_pretrained(base)
        torch.manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + scale * torch.randn_like(p))
        model.save_pretrained(root / name)  # no tokenizer: probe uses the first model's
        paths.append(str(root / name))
    return paths


def test_module_types():
    assert module_type("model.layers.0.self_attn.q_proj.weight") == "attention"
    assert module_type("model.layers.3.mlp.down_proj.weight") == "mlp"
    assert module_type("model.embed_tokens.weight") == "embeddings"
    assert module_type("model.layers.0.input_layernorm.weight") == "norms"
    assert module_type("model.norm.weight") == "norms"
    assert module_type("lm_head.weight") == "lm_head"


def test_drift_shares_match_the_gaussian_perturbation(models, tmp_path, monkeypatch):
    import eksft.analysis.drift as drift

    monkeypatch.setattr(drift, "CHUNK", 500)  # force the sliced (large-tensor) path on tiny tensors
    base, big, small = models
    assert cli.main(["drift", base, big, small, "--output-dir", str(tmp_path)]) == 0
    for name in ("drift.json", "drift_histogram.png", "drift_thresholds.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "drift.json").read_text())["models"]
    # relative change = s*|z|: P(|z| > 1) = 0.317 and P(|z| > 0.1) = 0.920
    assert report[big]["share_above"]["0.01"] == pytest.approx(0.317, abs=0.03)
    assert report[big]["share_above"]["0.001"] == pytest.approx(0.920, abs=0.03)
    assert report[small]["share_above"]["0.001"] == pytest.approx(0.317, abs=0.03)
    assert report[small]["share_above"]["0.1"] == 0.0
    assert set(report[big]["by_type"]) == {"attention", "mlp", "embeddings", "norms", "lm_head"}
    t = report[big]["tensors"]["model.embed_tokens.weight"]
    assert t["relative_frobenius"] == pytest.approx(1e-2, rel=0.1)
    assert sum(report[big]["histogram"]["counts"]) == report[big]["numel"]


def test_drift_refuses_a_folder_without_safetensors(tmp_path, models):
    with pytest.raises(SystemExit, match="no \\*.safetensors"):
        cli.main(["drift", models[0], str(tmp_path), "--output-dir", str(tmp_path / "out")])


def test_probe_probabilities_and_masks(models, tmp_path):
    base, big, _ = models
    problem, solution = "Calculate 3 + 4.", "3 + 4 = 7. The answer is \\boxed{7}."
    assert (
        cli.main(["probe", base, big, "--problem", problem, "--solution", solution, "--output-dir", str(tmp_path)]) == 0
    )
    for name in ("probe.json", "probe.html", "probe.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "probe.json").read_text())
    assert "".join(report["tokens"]) == solution
    r0 = report["models"][base]
    assert len(r0["prob"]) == len(r0["entropy"]) == len(r0["masked"]) == len(solution.encode())  # byte tokenizer

    # Direct check of the first token's probability: row (prompt_len - 1) scores the first solution token.
    model, tok = load_model_and_tokenizer(base, dtype="float32")
    text = f"{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt + solution, add_special_tokens=False, return_tensors="pt").input_ids
    n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        p = model(ids).logits[0, n_prompt - 1].softmax(-1)[ids[0, n_prompt]]
    assert r0["prob"][0] == pytest.approx(float(p), rel=1e-4)

    # Policy == reference: KL is 0 everywhere, so only the top-20% entropy tokens are masked (paper rank rule).
    assert r0["masked_fraction"] <= 0.2 + 1e-9 and sum(r0["masked"]) >= 1
    assert report["models"][big]["kl_mean"] > 0
    assert "outline" in (tmp_path / "probe.html").read_text()


def write_metrics(run_dir, iou_values):
    run_dir.mkdir()
    lines = [{"step": 0, "loss": 2.0, "learning_rate": 1e-5}]  # no mask metric: skipped
    for i, v in enumerate(iou_values, 1):
        lines.append(
            {
                "step": i,
                "loss": 1.0,
                "masked_fraction": 0.3,
                "iou_entropy_kl": v,
                "entropy_mean": 1.5,
                "kl_mean": 0.01 * i,
                "epoch": 0.1 * i,
            }
        )
    lines.append({"step": len(iou_values), "eval_loss": 0.9})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_masks_reads_runs_and_plots(tmp_path):
    write_metrics(tmp_path / "eksft", [0.4, 0.5, 0.6, 0.5])
    write_metrics(tmp_path / "eksft_rho01", [0.2, 0.3])
    out = tmp_path / "out"
    assert cli.main(["masks", str(tmp_path / "eksft"), str(tmp_path / "eksft_rho01"), "--output-dir", str(out)]) == 0
    report = json.loads((out / "masks.json").read_text())
    assert report["eksft"]["steps"] == [1, 2, 3, 4]
    assert report["eksft"]["series"]["iou_entropy_kl"] == [0.4, 0.5, 0.6, 0.5]
    assert set(report["eksft"]["series"]) == {"masked_fraction", "iou_entropy_kl", "entropy_mean", "kl_mean"}
    assert report["eksft"]["summary"]["iou_entropy_kl"]["mean"] == pytest.approx(0.5)
    assert (out / "masks.png").stat().st_size > 0


def test_masks_without_output_dir_writes_into_the_first_run(tmp_path, capsys):
    """`eksft masks RUN_DIR` alone: masks.json and masks.png in RUN_DIR/masks (not a run file for training's
    output-folder checks); a missing run is one line and creates nothing."""
    from eksft.jobs.output_dir import run_contents

    write_metrics(tmp_path / "eksft", [0.4, 0.5])
    write_metrics(tmp_path / "sft", [0.0, 0.0])
    contents = run_contents(str(tmp_path / "eksft"))
    assert cli.main(["masks", str(tmp_path / "eksft"), str(tmp_path / "sft")]) == 0
    report = json.loads((tmp_path / "eksft" / "masks" / "masks.json").read_text())
    assert set(report) == {"eksft", "sft"} and report["eksft"]["steps"] == [1, 2]
    assert (tmp_path / "eksft" / "masks" / "masks.png").stat().st_size > 0
    assert f"wrote {tmp_path / 'eksft' / 'masks' / 'masks.json'}" in capsys.readouterr().out
    assert run_contents(str(tmp_path / "eksft")) == contents
    with pytest.raises(SystemExit, match="eksft masks: .*missing/metrics.jsonl does not exist"):
        cli.main(["masks", str(tmp_path / "missing")])
    assert not (tmp_path / "missing").exists()


def test_masks_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "iou_entropy_kl": 0.5}\n{broken\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 2: invalid JSON"):
        read_run(tmp_path / "run")
    with pytest.raises(ValueError, match="does not exist"):
        read_run(tmp_path / "missing")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "eval_loss": 0.5}\n')
    with pytest.raises(ValueError, match="no line with any of"):
        read_run(tmp_path / "run")


def test_masks_lists_the_most_masked_targets(tmp_path, capsys):
    """RUN_DIR/mask_targets.json (written by training) goes into masks.json and the printed listing: token ids seen
    in at least half of the steps, most-masked first."""
    write_metrics(tmp_path / "eksft", [0.4, 0.5, 0.6, 0.5])
    write_metrics(tmp_path / "sft", [0.0, 0.0])

    def row(i, text, share, seen, all_masked, prob):
        return dict(
            token_id=i,
            text=text,
            masked_share=share,
            occurrences=10,
            masked=int(10 * share),
            steps_seen=seen,
            steps_all_masked=all_masked,
            streak=all_masked,
            final_prob=prob,
        )

    targets = {
        "steps": 4,
        "warned_at_step": 3,
        "tokens": [row(5, "Left", 1.0, 4, 4, 0.03), row(6, "rare", 1.0, 1, 1, 0.5), row(7, "The", 0.9, 4, 3, 0.05)],
    }
    (tmp_path / "eksft" / "mask_targets.json").write_text(json.dumps(targets))
    out = tmp_path / "out"
    assert cli.main(["masks", str(tmp_path / "eksft"), str(tmp_path / "sft"), "--output-dir", str(out)]) == 0
    report = json.loads((out / "masks.json").read_text())
    assert report["eksft"]["targets"] == targets and report["sft"]["targets"] is None
    printed = capsys.readouterr().out
    assert "the persistent-mask warning fired at step 3" in printed and "'rare'" not in printed
    lines = [ln.split() for ln in printed.splitlines() if ln.strip().startswith("'")]
    assert lines == [["'Left'", "100%", "4/4", "0.030"], ["'The'", "90%", "3/4", "0.050"]]


def test_masks_reads_only_metrics_training_logs():
    """Every metric ``eksft masks`` plots is one training logs: the EKSFT loss's own metrics or the mask tracker's
    (a renamed metric would otherwise leave its panel empty without an error)."""
    from eksft.analysis.masks import MASK_METRICS, TITLES
    from eksft.losses.eksft import EKSFT_METRICS
    from eksft.train.step_log import METRIC

    assert set(MASK_METRICS) <= set(EKSFT_METRICS) | {METRIC}
    assert set(TITLES) == set(MASK_METRICS)

"""Per-token probability of a reference solution under several models (paper Appendix D, Figure 6).

For each solution token u_j: p(u_j) from row j−1 of each model's logits (docs/losses.md conventions), the entropy
H_j of that row, and whether EKSFT would take the token out of cross-entropy when that model is the policy and the
first model is the reference (``eksft.losses.eksft_loss(...).mask``). For the first model itself the policy equals
the reference, every KL is 0, and only high-entropy tokens are masked (docs/losses.md, EKSFT step 3).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from eksft.losses.eksft import RHO


def build_inputs(tokenizer, problem: str, solution: str, *, instruction: str, chat_template: bool):
    """``(input_ids, labels)``, both ``(1, T)``: prompt as ``eksft eval`` builds it, then the solution as response."""
    from eksft.eval.sampling import SamplingConfig, build_prompt

    cfg = SamplingConfig(chat_template=chat_template, instruction=instruction)
    prompt = build_prompt(tokenizer, problem, cfg)
    prompt_ids = tokenizer(prompt, add_special_tokens=not chat_template)["input_ids"]
    sol_ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
    if not sol_ids:
        raise ValueError("build_inputs.solution is empty after tokenisation")
    ids = torch.tensor([prompt_ids + sol_ids])
    labels = ids.clone()
    labels[:, : len(prompt_ids)] = -100
    return ids, labels


def probe(
    models: list[str],
    problem: str,
    solution: str,
    *,
    instruction: str,
    chat_template: bool = True,
    rho: float = RHO,
    dtype: str = "float32",
) -> dict:
    """Token table of every model (see the module docstring). The first model's tokenizer is used for all."""
    from eksft.losses import eksft_loss
    from eksft.models.loading import load_model, load_tokenizer

    # One tokenizer (the first model's) for all: probe compares fine-tunes of one base, which share the vocabulary.
    tokenizer = load_tokenizer(models[0])
    ids, labels = build_inputs(tokenizer, problem, solution, instruction=instruction, chat_template=chat_template)
    valid = labels[0] != -100
    ref_logits, out = None, {"models": {}, "tokens": [tokenizer.decode([t]) for t in ids[0][valid].tolist()]}
    for name in models:
        model = load_model(name, dtype=dtype)
        if ref_logits is not None and model.get_output_embeddings().weight.shape[0] != ref_logits.shape[-1]:
            raise ValueError(
                f"{name} has a vocabulary of {model.get_output_embeddings().weight.shape[0]} tokens, "
                f"{models[0]} of {ref_logits.shape[-1]}; probe compares models sharing one tokenizer"
            )
        with torch.no_grad():
            logits = model(ids.to(model.device)).logits.float().cpu()  # (1, T, V)
        del model
        if ref_logits is None:
            ref_logits = logits
        logz = torch.log_softmax(logits[0, :-1], dim=-1)  # row j-1 scores target j
        targets = ids[0, 1:]
        rows = valid[1:]
        prob = logz.gather(-1, targets[:, None]).squeeze(-1).exp()[rows]
        entropy = -(logz.exp() * logz).nan_to_num().sum(-1)[rows]
        result = eksft_loss(logits, labels, ref_logits, rho=rho)
        masked = result.mask[0][valid]
        out["models"][name] = {
            "prob": prob.tolist(),
            "entropy": entropy.tolist(),
            "masked": masked.tolist(),
            "mean_prob": float(prob.mean()),
            "mean_entropy": float(entropy.mean()),
            "masked_fraction": result.metrics["masked_fraction"],
            "iou_entropy_kl": result.metrics["iou_entropy_kl"],
            "kl_mean": result.metrics["kl_mean"],
        }
    out.update({"problem": problem, "solution": solution, "rho": rho, "reference": models[0]})
    return out


def write_html(report: dict, path: Path) -> None:
    """Tokens shaded red by probability (darker: more likely, as in the paper's figure); masked tokens boxed."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>eksft probe</title><style>body{font-family:sans-serif;"
        "max-width:70em} .t{white-space:pre-wrap;font-family:monospace;padding:1px 0} .m{outline:2px solid "
        "#1f4fd1} h3{margin-bottom:.2em}</style>",
        f"<p>Probability of each reference token (red; darker = higher). Boxed blue: tokens EKSFT masks with "
        f"ρ = {report['rho']} and reference {html.escape(report['reference'])}. Hover for p, entropy.</p>",
    ]
    for name, r in report["models"].items():
        parts.append(
            f"<h3>{html.escape(name)}</h3><p>mean p = {r['mean_prob']:.3f}, mean entropy = "
            f"{r['mean_entropy']:.3f} nats, masked {r['masked_fraction']:.1%}</p><div>"
        )
        for tok, p, h, m in zip(report["tokens"], r["prob"], r["entropy"], r["masked"]):
            cls = "t m" if m else "t"
            parts.append(
                f"<span class='{cls}' style='background:rgba(214,39,40,{p:.3f})' "
                f"title='p={p:.3f} H={h:.3f}'>{html.escape(tok)}</span>"
            )
        parts.append("</div>")
    path.write_text("".join(parts) + "\n")


def plot_probe(report: dict, path: Path) -> None:
    """Two strips per model (probability, entropy), models one above the other; x marks masked tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens, models = report["tokens"], list(report["models"])
    width = min(24, 3 + 0.18 * len(tokens))
    fig, axes = plt.subplots(2 * len(models), 1, figsize=(width, 1.1 * 2 * len(models) + 1.2), squeeze=False)
    max_h = max(max(r["entropy"]) for r in report["models"].values()) or 1.0
    for i, name in enumerate(models):
        r = report["models"][name]
        for j, (key, cmap, vmax) in enumerate((("prob", "Reds", 1.0), ("entropy", "Blues", max_h))):
            ax = axes[2 * i + j][0]
            image = ax.imshow([r[key]], aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
            bar = fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
            bar.set_label("p(token)" if key == "prob" else "entropy (nats)", fontsize=6)
            bar.ax.tick_params(labelsize=6)
            xs = [x for x, m in enumerate(r["masked"]) if m]
            ax.scatter(xs, [0] * len(xs), marker="x", color="black", s=12, linewidths=0.8)
            ax.set_yticks([0], [f"{Path(name).name or name}\n{key}"], fontsize=7)
            show = len(tokens) <= 80
            ax.set_xticks(
                range(len(tokens)) if show else [],
                [t.replace("\n", "\\n") for t in tokens] if show else [],
                rotation=90,
                fontsize=6,
            )
    title = f"per-token probability (red) and entropy (blue); x = masked by EKSFT (ρ={report['rho']})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_probe(models: list[str], problem: str, solution: str, out_dir: str | Path, **kwargs) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = probe(models, problem, solution, **kwargs)
    (out / "probe.json").write_text(json.dumps(report, indent=1) + "\n")
    write_html(report, out / "probe.html")
    plot_probe(report, out / "probe.png")
    return report

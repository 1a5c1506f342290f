"""``eksft pipeline CONFIG.yaml``: for each method, SFT -> eval -> DAPO -> eval, resumable, one report (docs/rl.md)."""

from __future__ import annotations

import argparse

HELP = "Compare SFT methods end to end: SFT -> eval -> RL (DAPO) -> eval, resumable, with one report."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline YAML (methods, sft, rl, data, eval; see docs/rl.md)")
    p.add_argument("--output_dir", default=None, help="override the config's output_dir")
    p.add_argument("--stages", nargs="+", default=None, choices=["sft", "sft_eval", "rl", "rl_eval"],
                   help="run only these stages (finished ones are skipped anyway)")  # fmt: skip
    p.add_argument("--report_only", action="store_true", help="rewrite the report from finished stages; train nothing")


def run(args) -> int:
    import os

    from eksft.pipeline import load_pipeline_config, run_pipeline
    from eksft.pipeline.report import write_report

    pc = load_pipeline_config(args.config, {"output_dir": args.output_dir, "stages": args.stages})
    if args.report_only:
        write_report(pc, os.path.join(pc.output_dir, "report"))
        print(f"report: {os.path.join(pc.output_dir, 'report', 'report.md')}")
        return 0
    check_stage_folders(pc)
    run_pipeline(pc)
    return 0


def check_stage_folders(pc, log=print) -> None:
    """The output-folder rule of ``eksft train`` for the training stages, before any model loads: a stage folder
    holding a run that this pipeline did not start, or one trained with other settings (its ``config.yaml``), is
    refused; the pipeline's own unfinished stage with the same settings resumes from its newest *complete*
    checkpoint (incomplete ones, cut short by a crash, are removed) or, with none, starts again from a clean folder."""
    import os

    import yaml

    from eksft.pipeline.layout import is_done, stage_dir
    from eksft.pipeline.run import data_file, rl_values, sft_values
    from eksft.train.output_dir import checkpoints, incomplete_reason, latest_complete, remove_run, run_contents

    train_file = data_file(pc) if any(s in pc.stages for s in ("sft", "rl")) else None
    for method in pc.methods:
        for stage, values_of in (("sft", sft_values), ("rl", rl_values)):
            out = stage_dir(pc, method, stage)
            contents = run_contents(out)
            if stage not in pc.stages or not contents:
                continue
            saved_path = os.path.join(out, "config.yaml")
            if not os.path.isfile(saved_path):
                raise ValueError(f"pipeline stage folder {out!r} holds a run this pipeline did not start "
                                 f"({', '.join(contents[:6])}); move it away or choose another output_dir.")
            with open(saved_path, encoding="utf-8") as f:
                saved = yaml.safe_load(f) or {}
            now = yaml.safe_load(yaml.safe_dump(values_of(pc, method, train_file), sort_keys=False))
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if changed:
                state = "a finished" if is_done(out) else "an unfinished"
                raise ValueError(
                    f"pipeline stage folder {out!r} holds {state} {method} {stage} run with other settings "
                    f"({', '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in changed[:5])}); rerunning "
                    "would mix them. Restore those settings, choose another output_dir, or delete that folder."
                )  # fmt: skip
            if is_done(out):
                continue
            complete = latest_complete(out)
            for c in checkpoints(out):  # newer than the newest complete one: cut short by a crash, unusable
                if c == complete:
                    break
                log(f"[pipeline] {out}: removing {os.path.basename(c)} ({incomplete_reason(c)})")
                remove_run(out, [os.path.basename(c)])
            if complete is None:  # crashed before its first checkpoint: the stage starts again, in a clean folder
                log(f"[pipeline] {out}: no complete checkpoint; the stage starts again")
                remove_run(out)

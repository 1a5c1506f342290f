"""``eksft pipeline CONFIG.yaml``: for each method, SFT -> eval -> DAPO -> eval, resumable, one report (docs/rl.md)."""

from __future__ import annotations

import argparse

HELP = "Compare SFT methods end to end: SFT -> eval -> RL (DAPO) -> eval, resumable, with one report."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline YAML (methods, sft, rl, data, eval; see docs/rl.md)")
    p.add_argument("--output_dir", default=None, help="override the config's output_dir")
    p.add_argument(
        "--stages",
        nargs="+",
        default=None,
        choices=["sft", "sft_eval", "rl", "rl_eval"],
        help="run only these stages (finished ones are skipped anyway)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="NAME",
        help="run only these of the config's methods (as the config writes them, e.g. 'eksft[rho=0.1]', or their "
        "folder names), e.g. to run methods in parallel processes; the report still covers every method with "
        "finished stages",
    )
    p.add_argument("--report_only", action="store_true", help="rewrite the report from finished stages; train nothing")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="run the whole pipeline on a tiny random model of the same architecture (2 steps per stage, 4 problems "
        "x 2 samples, the same engine on 2 CPU processes) into OUTPUT_DIR-smoke (or --output_dir) and print a "
        "checklist (docs/training.md)",
    )


def run(args) -> int:
    import os

    from eksft.pipeline import load_pipeline_config, run_pipeline
    from eksft.pipeline.report import write_report
    from eksft.pipeline.run import check_stage_folders

    if args.smoke:
        from eksft.smoke import check_ok, smoke_pipeline

        return check_ok(smoke_pipeline(args.config, args.output_dir, args.stages, args.methods))
    pc = load_pipeline_config(args.config, {"output_dir": args.output_dir, "stages": args.stages})
    if args.report_only:
        write_report(pc, os.path.join(pc.output_dir, "report"))
        print(f"report: {os.path.join(pc.output_dir, 'report', 'report.md')}")
        return 0
    check_stage_folders(pc)  # before any model loads
    run_pipeline(pc, only=args.methods)
    return 0

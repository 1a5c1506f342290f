"""``eksft eval``: sample n answers per problem, check them with math-verify, report unbiased pass@k.

Options and output files: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Evaluate models by unbiased pass@k with math-verify on built-in or file benchmarks."


def _ks(text: str) -> list[int]:
    try:
        return sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k {text!r}: expected comma-separated integers like 1,8,32") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eksft.data.synthetic import BENCHMARKS
    from eksft.eval.benchmarks import LAYOUTS
    from eksft.eval.sampling import BACKENDS, SamplingConfig
    from eksft.eval.intervals import RESAMPLES
    from eksft.eval.protocols import DEFAULTS, PROTOCOLS
    from eksft.eval.verify import EXTRACTIONS

    d = SamplingConfig()
    unset = argparse.SUPPRESS  # not given -> the protocol's value, else the default named in the help
    p.add_argument("models", nargs="+", metavar="MODEL", help="local model folder or hub name (several: compared)")
    p.add_argument("--benchmark", action="append", required=True, metavar="NAME_OR_FILE",
                   help=f"built-in ({', '.join(BENCHMARKS)}), a .jsonl/.json/.parquet file, LAYOUT:FILE or a "
                        f"layout's hub dataset ({', '.join(LAYOUTS)}); repeat for several")  # fmt: skip
    p.add_argument("--output-dir", required=True, help="results, samples and plots go here; rerun to resume")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default=None,
                   help="preset sampling settings: paper (temperature 1.0, top-p 1.0, n 32, k 1,8,32, 8192 tokens) "
                        "or r1 (temperature 0.6, top-p 0.95, n 64, k 1,8,64, 32768 tokens); flags given explicitly "
                        "override it; without it the paper's values are the defaults")  # fmt: skip
    p.add_argument("--n", type=int, default=unset, help=f"samples per problem (default: {DEFAULTS['n']})")
    p.add_argument("--k", type=_ks, default=unset,
                   help=f"comma-separated k for pass@k, each k <= n (default: {','.join(map(str, DEFAULTS['k']))})")
    p.add_argument("--temperature", type=float, default=unset,
                   help=f"sampling temperature, 0: greedy (default: {DEFAULTS['temperature']})")
    p.add_argument("--top-p", type=float, default=unset, help=f"(default: {DEFAULTS['top_p']})")
    p.add_argument("--top-k", type=int, default=unset, help=f"0: no top-k cut (default: {DEFAULTS['top_k']})")
    p.add_argument("--max-new-tokens", type=int, default=unset, help=f"(default: {DEFAULTS['max_new_tokens']})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per generate call (HF backend)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same samples (HF backend)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems of each benchmark")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: vLLM when importable with a GPU")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside each MODEL folder")
    p.add_argument("--no-chat-template", action="store_true", help="prompt base models with the raw text")
    p.add_argument("--instruction", default=unset, help="appended to every problem (default: the paper's, "
                   f"{d.instruction!r})")
    p.add_argument("--answer-extraction", choices=EXTRACTIONS, default="last_boxed",
                   help="last_boxed: the final \\boxed{} is the answer; math_verify: parse the whole completion; "
                        "last_number: the last number in the completion (base models without \\boxed{}); "
                        "samples.jsonl records last_boxed and last_number checks either way")  # fmt: skip
    p.add_argument("--bootstrap-resamples", type=int, default=RESAMPLES,
                   help="resamples of the bootstrap over problems behind every 95%% interval")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of those resamples (same seed, same interval)")
    p.add_argument("--verify-timeout", type=int, default=5, help="seconds per math-verify parse or comparison")
    p.add_argument("--problem-column", default=None, help="problem column of file benchmarks")
    p.add_argument("--answer-column", default=None, help="gold answer column of file benchmarks")
    p.add_argument("--id-column", default=None, help="id column of file benchmarks (default: detected or row index)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def resolved_settings(args) -> dict:
    """Sampling settings from ``--protocol`` and the flags given explicitly (flags win)."""
    from eksft.eval.protocols import resolve

    explicit = {key: getattr(args, key, None)
                for key in ("n", "k", "temperature", "top_p", "top_k", "max_new_tokens", "instruction")}  # fmt: skip
    return resolve(args.protocol, explicit)


def run(args) -> int:
    from eksft.eval.runner import EvalConfig, evaluate
    from eksft.eval.sampling import SamplingConfig

    try:
        r = resolved_settings(args)
        sampling = SamplingConfig(n=r["n"], temperature=r["temperature"], top_p=r["top_p"], top_k=r["top_k"],
                                  max_new_tokens=r["max_new_tokens"], batch_size=args.batch_size,
                                  chat_template=not args.no_chat_template, instruction=r["instruction"])  # fmt: skip
        cfg = EvalConfig(models=args.models, benchmarks=args.benchmark, output_dir=args.output_dir, ks=r["k"],
                         sampling=sampling, seed=args.seed, backend=args.backend, dtype=args.dtype,
                         gguf_file=args.gguf_file, limit=args.limit, extraction=args.answer_extraction,
                         verify_timeout=args.verify_timeout, problem_column=args.problem_column,
                         answer_column=args.answer_column, id_column=args.id_column,
                         progress=not args.no_progress, protocol=args.protocol,
                         bootstrap_resamples=args.bootstrap_resamples, bootstrap_seed=args.bootstrap_seed)  # fmt: skip
        evaluate(cfg)
    except ValueError as err:
        print(f"eksft eval: {err}", file=sys.stderr)
        return 2
    return 0

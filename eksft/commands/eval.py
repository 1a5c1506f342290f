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


#: The fields of EvalConfig and SamplingConfig that are flags, in --help order. Name, default, type and help come
#: from the field; how a flag differs is in :func:`_cli`. ``sampling`` is no flag (its fields are).
FLAGS = (
    "models",
    "benchmarks",
    "output_dir",
    "protocol",
    "n",
    "ks",
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "batch_size",
    "seed",
    "limit",
    "offset",
    "backend",
    "dtype",
    "gguf_file",
    "data_parallel",
    "tensor_parallel",
    "chat_template",
    "instruction",
    "extraction",
    "bootstrap_resamples",
    "bootstrap_seed",
    "verify_timeout",
    "problem_column",
    "answer_column",
    "id_column",
    "progress",
)
#: set by --protocol unless given: absent from the namespace when not given, the paper's value (protocols.DEFAULTS,
#: keyed by the flag) named in the help
PRESET = ("n", "ks", "temperature", "top_p", "top_k", "max_new_tokens", "instruction")


def _cli() -> dict[str, dict]:
    """What the command line adds to a field: another flag name, choices, a parser, ``required``."""
    from eksft.data.synthetic import BENCHMARKS
    from eksft.eval.benchmarks import LAYOUTS
    from eksft.eval.protocols import PROTOCOLS
    from eksft.eval.sampling import BACKENDS
    from eksft.eval.verify import EXTRACTIONS

    presets = "presets: " + ", ".join(
        f"{name} (temperature {s['temperature']}, top-p {s['top_p']}, n {s['n']}, "
        f"k {','.join(map(str, s['k']))}, {s['max_new_tokens']} tokens)"
        for name, s in PROTOCOLS.items()
    )
    return {
        "models": {"flag": "models", "nargs": "+", "metavar": "MODEL"},
        "benchmarks": {
            "flag": "--benchmark",
            "action": "append",
            "required": True,
            "metavar": "NAME_OR_FILE",
            "more": f"built-in: {', '.join(BENCHMARKS)}; layouts: {', '.join(LAYOUTS)}; repeat for several",
        },
        "output_dir": {"required": True},
        "protocol": {"choices": list(PROTOCOLS), "more": presets},
        "ks": {"flag": "--k", "type": _ks},
        "backend": {"choices": BACKENDS},
        "extraction": {"flag": "--answer-extraction", "choices": EXTRACTIONS},
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from eksft.config_io import range_text
    from eksft.eval.protocols import DEFAULTS
    from eksft.eval.runner import EvalConfig
    from eksft.eval.sampling import SamplingConfig

    fields = {f.name: f for cls in (EvalConfig, SamplingConfig) for f in dataclasses.fields(cls)}
    cli = _cli()
    for name in FLAGS:
        f, kw = fields[name], dict(cli.get(name, {}))
        text = f.metadata["help"] + (f"; {kw.pop('more')}" if "more" in kw else "")
        if "range" in f.metadata:
            text += f"; allowed: {range_text(f.metadata['range'])}"
        if "choices" in f.metadata:
            kw.setdefault("choices", list(f.metadata["choices"]))
        flag = kw.pop("flag", "--" + name.replace("_", "-"))
        kind = str(f.type).replace(" | None", "")  # annotations are strings (from __future__ import annotations)
        if kind == "bool":  # on by default: the flag turns it off
            flag, kw = "--no-" + name.replace("_", "-"), {"action": "store_true"}
            text += "; this flag turns it off"
        elif kind in ("int", "float"):
            kw.setdefault("type", {"int": int, "float": float}[kind])
        if name in PRESET:
            shown = DEFAULTS[flag[2:].replace("-", "_")]
            shown = ",".join(map(str, shown)) if isinstance(shown, list) else repr(shown) if kind == "str" else shown
            kw["default"], text = argparse.SUPPRESS, f"{text} (default: {shown})"
        elif kind != "bool" and f.default is not dataclasses.MISSING:
            kw["default"] = f.default  # shown by the parser's formatter
        p.add_argument(flag, help=text.replace("%", "%%"), **kw)  # argparse formats help with %


def resolved_settings(args) -> dict:
    """Sampling settings from ``--protocol`` and the flags given explicitly (flags win)."""
    from eksft.eval.protocols import resolve

    explicit = {
        key: getattr(args, key, None)
        for key in ("n", "k", "temperature", "top_p", "top_k", "max_new_tokens", "instruction")
    }
    return resolve(args.protocol, explicit)


def run(args) -> int:
    from eksft.eval.parallel import WorkerFailed
    from eksft.eval.runner import EvalConfig, evaluate
    from eksft.eval.sampling import SamplingConfig

    try:
        r = resolved_settings(args)
        sampling = SamplingConfig(
            n=r["n"],
            temperature=r["temperature"],
            top_p=r["top_p"],
            top_k=r["top_k"],
            max_new_tokens=r["max_new_tokens"],
            batch_size=args.batch_size,
            chat_template=not args.no_chat_template,
            instruction=r["instruction"],
        )
        cfg = EvalConfig(
            models=args.models,
            benchmarks=args.benchmark,
            output_dir=args.output_dir,
            ks=r["k"],
            sampling=sampling,
            seed=args.seed,
            backend=args.backend,
            dtype=args.dtype,
            gguf_file=args.gguf_file,
            limit=args.limit,
            offset=args.offset,
            extraction=args.answer_extraction,
            verify_timeout=args.verify_timeout,
            problem_column=args.problem_column,
            answer_column=args.answer_column,
            id_column=args.id_column,
            progress=not args.no_progress,
            protocol=args.protocol,
            bootstrap_resamples=args.bootstrap_resamples,
            bootstrap_seed=args.bootstrap_seed,
            data_parallel=args.data_parallel,
            tensor_parallel=args.tensor_parallel,
        )
        evaluate(cfg)
    except WorkerFailed as err:  # a worker process died: what it finished is kept, a rerun resumes
        print(f"eksft eval: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # EvalConfig.sampling.n -> --n, EvalConfig.ks -> --k: the flags of this command
        from .flags import cli_message

        renamed = {
            f"EvalConfig.{name}": cli["flag"] if cli["flag"].startswith("-") else cli["metavar"]
            for name, cli in _cli().items()
            if "flag" in cli
        }
        print(f"eksft eval: {cli_message(err, ('EvalConfig',), renamed)}", file=sys.stderr)
        return 2
    return 0

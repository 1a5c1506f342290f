"""What a training job of ``eksft train`` (SFT) and ``eksft rl`` (DAPO) shares, whichever trainer it builds:

- config: :class:`~eksft.jobs.config.RunConfig`, the model / data / output / bf16 fields both configs inherit, and
  the ranges and defaults both apply to transformers' fields;
- policy: the policy and its tokenizer from a config (loading itself is eksft.models.loading);
- output_dir: the output folder rules (a run in it, overwrite, resume, complete and finite checkpoints);
- metrics: ``OUTPUT_DIR/metrics.jsonl`` (the callback that writes it, the reader) and the loss-metric means;
- command: what the commands do around a job (output-folder check, clean shut-down, the "done" line).

No module imports another package of eksft's trainers (``eksft.train``, ``eksft.rl``): both import from here.
"""

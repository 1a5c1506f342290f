"""``eksft train CONFIG.yaml [--field value ...]``: fine-tune with any loss of ``eksft.losses``.

Every field of :class:`eksft.train.EKSFTConfig` (TRL's ``SFTConfig`` plus the EKSFT fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML. YAML files may ``include: other.yaml`` (a path relative to
the file) to inherit a base config, which keeps per-method configs a few lines long. The command itself is
:class:`~eksft.commands.config_command.ConfigCommand`, as ``eksft rl``.
"""

from __future__ import annotations

from eksft.commands.config_command import ConfigCommand

HELP = "Fine-tune a causal LM with EKSFT or a comparison loss (YAML config + --field overrides)."

COMMAND = ConfigCommand("train", config="eksft.train.config:EKSFTConfig", job="eksft.train:train")
add_arguments, config_from, run = COMMAND.add_arguments, COMMAND.config_from, COMMAND.run

"""``eksft rl CONFIG.yaml [--field value ...]``: DAPO from any checkpoint (docs/rl.md).

Every field of :class:`eksft.rl.RLConfig` (TRL's ``GRPOConfig`` plus the data / reward fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML; ``include: base.yaml`` inherits. The command itself is
:class:`~eksft.commands.config_command.ConfigCommand`, as ``eksft train``.
"""

from __future__ import annotations

from eksft.commands.config_command import ConfigCommand

HELP = "Reinforcement learning with DAPO (TRL GRPOTrainer) from any checkpoint (YAML config + --field overrides)."

COMMAND = ConfigCommand("rl", config="eksft.rl.config:RLConfig", job="eksft.rl:train_rl")
add_arguments, config_from, run = COMMAND.add_arguments, COMMAND.config_from, COMMAND.run

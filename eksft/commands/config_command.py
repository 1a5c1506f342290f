"""What ``eksft train`` and ``eksft rl`` share as commands: ``eksft NAME [CONFIG.yaml] [--field value ...] [--smoke]``.

Every field of the command's config class is a YAML key and a ``--flag`` with the same name; flags override the YAML;
``include: base.yaml`` inherits (eksft.config_io). ``--smoke`` runs the config's smoke check (eksft.smoke) instead;
otherwise the job runs inside eksft.jobs.command.run_job (output-folder rule, clean shut-down, the "done" line).
"""

from __future__ import annotations

import argparse
import importlib

from eksft.commands.flags import add_smoke_flag
from eksft.config_io import add_config_arguments, config_from_file, flag_overrides

#: flags that are not config fields
CLI_ONLY = ("config", "smoke")


def _load(target: str):
    """``"package.module:name"`` -> that object, imported now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class ConfigCommand:
    """One such command: ``config`` names its config class and ``job`` its job function (``job(cfg) -> trainer``), as
    ``"module:name"``, imported only when the command runs, so ``eksft --help`` imports neither (TRL takes seconds)."""

    def __init__(self, name: str, config: str, job: str):
        self.name, self.config, self.job = name, config, job

    def config_class(self):
        return _load(self.config)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_config_arguments(p, self.config_class)  # the ~200 field flags, added when this command itself is parsed
        add_smoke_flag(p)

    def config_from(self, path: str | None, overrides: dict | None = None):
        """YAML (with includes) + overrides -> the config; unknown keys are an error naming them."""
        return config_from_file(path, overrides, self.config_class(), f"eksft {self.name}")

    def run(self, args) -> int:
        overrides = flag_overrides(args, CLI_ONLY)
        if getattr(args, "smoke", False):
            from eksft.smoke import check_ok, smoke_job

            return check_ok(smoke_job(self.name, args.config, overrides))
        from eksft.jobs.command import run_job

        return run_job(self.config_from(args.config, overrides), _load(self.job))

"""The private transformers/TRL/argparse attributes eksft relies on (``eksft.compat.PRIVATE``) exist on the installed
versions with the parameters eksft uses; a renamed one is reported in one line naming it and the version."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from eksft import compat


@pytest.mark.parametrize("entry", compat.PRIVATE, ids=lambda p: f"{p.owner.rpartition(':')[2] or p.owner}.{p.name}")
def test_private_attribute_still_there(entry):
    assert compat.check(entry) is None, compat.check(entry)


def test_every_private_call_in_eksft_is_listed():
    """Each private method eksft overrides and calls through ``super()``, and each private attribute it reads on an
    object whose class eksft does not define that attribute in, has an entry in ``compat.PRIVATE``."""
    from pathlib import Path

    source = "\n".join(f.read_text() for f in Path(compat.__file__).parent.rglob("*.py"))
    own = set(re.findall(r"def (_\w+)", source)) | set(re.findall(r"self\.(_\w+)\s*(?::[^=\n]*)?=[^=]", source))
    own |= {"_run", "_debug", "_eksft_fields", "_eksft_loss_forward"}  # eksft's argparse and model markers
    overridden = set(re.findall(r"super\(\)\.(_[a-z]\w*)", source))
    read = set(re.findall(r"\b(?:self|t|trainer|config|p|HfArgumentParser)\.(_[a-z]\w*)", source))
    foreign = overridden | (read - own)
    listed = {p.name for p in compat.PRIVATE}
    assert foreign <= listed, f"private attributes used but not in eksft/compat.py: {sorted(foreign - listed)}"


class _Renamed:
    """A stand-in for a transformers release that renamed ``_get_grad_norm`` and changed ``_save_checkpoint``."""

    def _grad_norm(self, model, grad_norm=None): ...

    def _save_checkpoint(self, model): ...


def test_renamed_or_changed_attribute_is_one_line_naming_it():
    missing = dataclasses.replace(compat.PRIVATE[0], owner=f"{__name__}:_Renamed")
    changed = dataclasses.replace(compat.PRIVATE[1], owner=f"{__name__}:_Renamed")
    gone = dataclasses.replace(compat.PRIVATE[5], set_by=f"{__name__}:_Renamed._save_checkpoint")
    for entry, says in ((missing, "is missing in"), (changed, "takes (model)"), (gone, "is no longer set by")):
        msg = compat.check(entry)
        assert msg is not None and "\n" not in msg and says in msg and entry.name in msg
        assert "constraints.txt" in msg  # the fix


def test_incompatible_version_stops_the_command_in_one_line(tmp_path):
    """`eksft train` on an installed TRL whose GRPO/SFT private method was renamed: one line, exit 2, no traceback."""
    script = (
        "import sys, trl.trainer.sft_trainer as m\n"
        "m.SFTTrainer._prepare_dataset_renamed = m.SFTTrainer._prepare_dataset\n"
        "del m.SFTTrainer._prepare_dataset\n"
        "from eksft.cli import main\n"
        f"out = {str(tmp_path / 'run')!r}\n"
        "sys.exit(main(['train', 'configs/demo_cpu.yaml', '--output_dir', out, '--max_steps', '1']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert lines[-1].startswith("eksft train: trl.trainer.sft_trainer.SFTTrainer._prepare_dataset is missing in trl ")

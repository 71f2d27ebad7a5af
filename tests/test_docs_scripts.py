"""The scripts the documentation shows are the ones shipped in docs/scripts, and they parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_slurm_job_script_in_the_training_guide_is_the_shipped_one():
    script = (DOCS / "scripts" / "train_slurm.sh").read_text()
    guide = (DOCS / "training.md").read_text()
    assert f"```bash\n{script.rstrip()}\n```" in guide
    assert "srun torchrun" in script and "-m decrappify train" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_slurm_job_script_parses():
    subprocess.run(["bash", "-n", str(DOCS / "scripts" / "train_slurm.sh")], check=True)

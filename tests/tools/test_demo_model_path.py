"""`unsloth-multiimage demo --model PATH` loads a local checkpoint (here: the tiny model saved to disk)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.heavy
def test_demo_with_a_local_model_folder(tiny, processor, tmp_path):
    model = tiny.build_model(processor, seed=0)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "unsloth_multiimage", "demo", "--steps", "6", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    out = proc.stdout + proc.stderr
    assert str(tmp_path) in out, out
    assert proc.returncode == 0, out

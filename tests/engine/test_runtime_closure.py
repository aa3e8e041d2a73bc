"""The runtime never imports the commands (``tools/``) or the demo harness (``demo/``): a training
script that imports the plugin and runs the patched collator loads neither (README, Design)."""

from __future__ import annotations

import json

import pytest

from tests.support import UNSLOTH_ZOO, fresh_python

# Runs in a fresh interpreter: the tiny model and processor come from a folder (the parent
# process built them), so nothing of the package but the runtime is imported to get them.
_SCRIPT = """
import json, sys
import unsloth_multiimage
from tests.support.zoo import load_vision_utils
vision_utils, _how = load_vision_utils()
from PIL import Image
from transformers import AutoProcessor, MllamaForConditionalGeneration
folder = sys.argv[1] if len(sys.argv) > 1 else {folder!r}
processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
model = MllamaForConditionalGeneration.from_pretrained(folder, local_files_only=True)
images = [Image.new("RGB", (28, 28), (40 * i, 80, 200)) for i in range(3)]
row = {{"messages": [
    {{"role": "user", "content": [{{"type": "image", "image": im}} for im in images] + [{{"type": "text", "text": "which colour"}}]}},
    {{"role": "assistant", "content": [{{"type": "text", "text": "red"}}]}},
]}}
batch = vision_utils.UnslothVisionDataCollator(model, processor)([row])
applied = {{s.name: s.applied for s in unsloth_multiimage.status()}}
loaded = sorted(n for n in sys.modules if n.startswith(("unsloth_multiimage.tools", "unsloth_multiimage.demo")))
print(json.dumps({{"slots": int((batch["aspect_ratio_ids"] > 0).sum()), "applied": applied, "loaded": loaded}}))
"""


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory, tiny, processor):
    folder = tmp_path_factory.mktemp("tiny_mllama")
    processor.save_pretrained(folder)
    tiny.build_model(processor, seed=0).save_pretrained(folder)
    return folder


@pytest.mark.heavy
@pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")
def test_a_patched_collator_call_loads_neither_the_commands_nor_the_demo_harness(saved_tiny):
    proc = fresh_python(_SCRIPT.format(folder=str(saved_tiny)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["applied"]["unsloth_collator"] and out["slots"] == 3, out  # the patch ran: every image
    assert out["loaded"] == [], out

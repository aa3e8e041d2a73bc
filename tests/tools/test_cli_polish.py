"""The CLI's manners: ``--version``; ``doctor`` says why a patch is off and the line that fixes it;
the demo's banner tells the truth; other libraries' known noise is hidden unless ``-v``.
(Files written with the user's umask: tests/tools/test_dataset_service.py.)"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, UNSLOTH_ZOO, clean_env, fresh_python


def test_version_prints_the_installed_version(capsys):
    from unsloth_multiimage.tools import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"unsloth-multiimage {importlib.metadata.version('unsloth-multiimage')}"


def _doctor_without(*names: str, **extra: str) -> str:
    env = {k: v for k, v in clean_env(**extra).items() if k not in names}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "unsloth_multiimage", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(REPO),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.heavy
@pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")
def test_doctor_gives_each_patch_left_off_its_reason_and_fix_without_verbose():
    # Without UNSLOTH_ZOO_DISABLE_GPU_INIT, importing unsloth_zoo on a CPU without `unsloth` fails:
    # the collator patch stays pending, and doctor must say why and what to do, not only with -v.
    out = _doctor_without("UNSLOTH_ZOO_DISABLE_GPU_INIT", UNSLOTH_MULTIIMAGE_DISABLE_PATCHES="mllama_processor")
    section = out.split("Patches not applied, and the fix", 1)[1].split("\n\n", 1)[0]
    assert "mllama_processor (blocked)" in section
    assert "Fix: remove 'mllama_processor' from UNSLOTH_MULTIIMAGE_DISABLE_PATCHES" in section
    if "unsloth_collator " in section:
        assert "`import unsloth_zoo.vision_utils` fails here" in section
        assert "UNSLOTH_ZOO_DISABLE_GPU_INIT=1" in section and "`import unsloth` before unsloth_zoo" in section


_BANNER = (
    "from unsloth_multiimage.demo.training import collator_description, load_zoo_collator\n"
    "print(collator_description(*load_zoo_collator()))\n"
)


@pytest.mark.heavy
@pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")
def test_the_demo_banner_says_not_patched_when_the_plugin_is_disabled():
    off = fresh_python(_BANNER, UNSLOTH_MULTIIMAGE_DISABLE="1")
    assert off.returncode == 0, off.stderr[-2000:]
    assert "NOT patched: the plugin is disabled (UNSLOTH_MULTIIMAGE_DISABLE=1)" in off.stdout
    assert "patched by" not in off.stdout


def test_the_demo_fallback_never_advises_an_install_that_would_replace_the_users_zoo():
    from unsloth_multiimage.demo.training import collator_description

    line = collator_description(None, "NotImplementedError: needs a GPU")
    if UNSLOTH_ZOO is None:
        assert 'pip install "unsloth-multiimage[demo]"' in line
    else:  # a pinned zoo that cannot be imported here: say what runs, do not upgrade it
        assert "pip install" not in line
        assert f"the installed unsloth_zoo {UNSLOTH_ZOO} cannot be imported here" in line
    assert line.startswith("a minimal chat-template collator")


_NOISE = """
import json, logging, os, sys, warnings
os.environ["HF_HUB_ENABLE_HF_TRANSFER"] = "1"  # what unsloth_zoo sets where hf_transfer is installed
os.environ.pop("HF_XET_HIGH_PERFORMANCE", None)
from unsloth_multiimage.tools.cli import setup_logging
setup_logging(sys.argv[1] == "verbose")
import huggingface_hub.constants
import torch.utils._pytree as pytree
class Constant:
    def __eq__(self, other):
        return isinstance(other, Constant)
    def __hash__(self):
        return 1
if hasattr(pytree, "register_constant"):  # two libraries registering one class: torch warns twice
    pytree.register_constant(Constant)
    pytree.register_constant(Constant)
from transformers import MllamaImageProcessor  # no torchvision here: transformers' fallback notice
logging.getLogger("torchao").warning("Failed to load _C.so: undefined symbol (re-logged)")
logging.getLogger("transformers.trainer_utils").warning("The tokenizer has new PAD/BOS/EOS tokens that differ")
class P:
    pass
try:
    pytree._register_pytree_node(P, lambda p: ([], None), lambda v, c: P())
except Exception:
    pass
logging.getLogger("unsloth_multiimage").warning("the plugin's own line")
"""


@pytest.mark.heavy
def test_cli_runs_hide_known_noise_and_verbose_shows_it(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    script = tmp_path / "noise.py"
    script.write_text(_NOISE)
    runs = {}
    for mode in ("quiet", "verbose"):
        proc = subprocess.run(
            [sys.executable, str(script), mode],
            capture_output=True,
            text=True,
            timeout=300,
            env=clean_env(PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[mode] = proc.stderr
    noise = ["Failed to load _C.so", "PAD/BOS/EOS", "_register_pytree_node` is deprecated"]
    import huggingface_hub.constants as hub_constants
    import torch.utils._pytree as pytree
    import transformers.utils.import_utils as import_utils

    if "`HF_HUB_ENABLE_HF_TRANSFER` environment variable is deprecated" in Path(hub_constants.__file__).read_text():
        noise.append("HF_HUB_ENABLE_HF_TRANSFER")
    if hasattr(pytree, "register_constant"):
        noise.append("is already registered as pytree node")

    # transformers 5.x says so when it falls back to the PIL image processor; 4.x has no such notice.
    if importlib.util.find_spec("torchvision") is None and "falling back" in Path(import_utils.__file__).read_text():
        noise.append("requires torchvision (not installed)")
    assert "the plugin's own line" in runs["quiet"] and "the plugin's own line" in runs["verbose"]
    assert [n for n in noise if n in runs["quiet"]] == [], runs["quiet"]
    assert [n for n in noise if n not in runs["verbose"]] == [], json.dumps(runs["verbose"])

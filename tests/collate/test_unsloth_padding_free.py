"""unsloth's own ``UnslothVisionDataCollator(padding_free=True)`` packs every family the plugin proves.

The collator under test is unsloth's REAL subclass (``unsloth/trainer.py`` of the pinned release,
its two GPU-only imports stood in: tests/support/unsloth_trainer.py) over the real zoo collator.
Upstream refuses every model type but Gemma 4 when the collator is built (the negative control);
with the plugin, its batches are the batches ``configure(packing=True)`` packs (whose exactness,
family by family, is tests/collate/test_packing_families.py), one Trainer step on them equals the
unpacked step, and evaluation collates from upstream's unpacked copy.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re

import pytest

from tests.support import UNSLOTH_ZOO
from tests.support.packing_cases import families, model_for, padded_batch, rows_of, tiny_family

with contextlib.suppress(ImportError):
    import triton  # noqa: F401  (the real one, before unsloth_zoo's CPU stand-in can take its name)


def _unsloth_version() -> str | None:
    try:
        return importlib.metadata.version("unsloth")
    except importlib.metadata.PackageNotFoundError:
        return None


pytestmark = pytest.mark.skipif(
    _unsloth_version() is None or UNSLOTH_ZOO is None,
    reason="unsloth is installed on the default row only (compat/matrix.toml: its trainer module is loaded there)",
)


@pytest.fixture(scope="module")
def trainer_module():
    from tests.support import unsloth_trainer
    from unsloth_multiimage.engine import activation

    module = unsloth_trainer.load()
    try:
        yield module
    finally:
        activation.deactivate()
        unsloth_trainer.unload()
        activation.activate()


@pytest.fixture(scope="module")
def zoo_cls():
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0].UnslothVisionDataCollator


def _has_facts(tiny) -> bool:
    from unsloth_multiimage.engine.activation import find_adapter

    adapter = find_adapter(tiny.processor)
    return adapter is not None and adapter.packing is not None


def _limit(batch) -> int:
    """A max_seq_length that packs the batch's rows into more than one sequence."""
    lengths = [int(n) for n in batch["attention_mask"].sum(1)]
    return max(max(lengths), (sum(lengths) + 1) // 2)


def _equal(got, want) -> None:
    import torch

    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
        else:
            assert got[key] == value, key


def test_the_patches_are_applied_to_the_real_class(trainer_module):
    from unsloth_multiimage.engine import activation

    decisions = {s.name: s for s in activation.status()}
    for name in ("unsloth_padding_free", "unsloth_padding_free_batches"):
        assert decisions[name].applied, decisions[name]


@pytest.mark.parametrize("family", families())
def test_padding_free_packs_as_configure_packing_does(family, trainer_module, zoo_cls):
    from unsloth_multiimage.collate.pack_context import packing_for
    from unsloth_multiimage.settings import overriding

    tiny = tiny_family(family)
    if not _has_facts(tiny):
        pytest.skip(f"{family} has no packing facts (its refusal: test_a_family_the_plugin_does_not_prove_is_refused)")
    model = model_for(tiny, "sdpa")
    rows = rows_of(tiny)
    limit = _limit(padded_batch(tiny, model, zoo_cls))
    with overriding(packing=True, packing_max_seq_length=limit), packing_for(model):
        want = dict(zoo_cls(model, tiny.processor)(rows))
    assert want["input_ids"].shape[0] > 1, "the batch should need several sequences"
    collator = trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=limit)
    assert collator.padding_free is True
    _equal(dict(collator(rows)), want)


def test_upstream_alone_refuses_what_the_plugin_packs(trainer_module):
    """The negative control: without the plugin, unsloth refuses a padding_free collator for Qwen2-VL."""
    from unsloth_multiimage.engine import activation

    tiny = tiny_family("qwen2_vl")
    model = model_for(tiny, "sdpa")
    activation.deactivate()
    try:
        with pytest.raises(ValueError, match=r"only supported for \['gemma4'\]"):
            trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=64)
    finally:
        activation.activate()


def test_without_the_batches_patch_the_build_is_left_to_upstream(trainer_module, monkeypatch):
    """The two patches act together: with ``unsloth_padding_free_batches`` disabled, upstream's own
    packing would run on Qwen2-VL's batches (positions without M-RoPE), so the build is upstream's
    and refuses."""
    from unsloth_multiimage.engine import activation

    tiny = tiny_family("qwen2_vl")
    model = model_for(tiny, "sdpa")
    activation.deactivate()
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_DISABLE_PATCHES", "unsloth_padding_free_batches")
    activation.activate()
    try:
        assert {s.name: s.applied for s in activation.status()}["unsloth_padding_free"]
        with pytest.raises(ValueError, match=r"only supported for \['gemma4'\]"):
            trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=64)
    finally:
        activation.deactivate()
        monkeypatch.delenv("UNSLOTH_MULTIIMAGE_DISABLE_PATCHES")
        activation.activate()


def test_a_family_the_plugin_does_not_prove_is_refused(trainer_module):
    from unsloth_multiimage.errors import PackingRefused

    tiny = tiny_family("minicpmv4_6")
    assert not _has_facts(tiny), "minicpmv4_6 gained packing facts: pick a family without them"
    with pytest.raises(PackingRefused) as caught:
        trainer_module.UnslothVisionDataCollator(model_for(tiny, "sdpa"), tiny.processor, padding_free=True)
    message = str(caught.value)
    assert "refused for minicpmv4_6" in message and "Fix: padding_free=False" in message, message


def test_the_longest_sequence_is_needed_when_the_collator_is_built(trainer_module):
    from unsloth_multiimage.errors import PackingRefused

    tiny = tiny_family("qwen2_vl")
    model = model_for(tiny, "sdpa")
    with pytest.raises(PackingRefused, match=r"no max_seq_length\. Fix: pass max_seq_length"):
        trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True)
    model.max_seq_length = 64  # an Unsloth model's from_pretrained(max_seq_length=...)
    try:
        collator = trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True)
        batch = collator(rows_of(tiny))
        assert batch["input_ids"].shape[1] <= 64 and "position_ids" in batch
    finally:
        del model.max_seq_length


def test_a_refusal_names_padding_free_as_the_fallback(trainer_module):
    from unsloth_multiimage.errors import PackingRefused

    tiny = tiny_family("qwen2_vl")
    model = model_for(tiny, "sdpa")
    collator = trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=512)
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = "made_up_attention"
    try:
        with pytest.raises(PackingRefused, match=r"UnslothVisionDataCollator\(padding_free=False\)"):
            collator(rows_of(tiny))
    finally:
        config._attn_implementation = saved


def test_evaluation_collates_from_upstreams_unpacked_copy(trainer_module, zoo_cls, tmp_path):
    """unsloth's trainer evaluates with ``_unpacked_for_evaluation``'s copy (``_padding_free`` off):
    the real function, on a transformers Trainer: training batches packed, evaluation batches not."""
    import datasets
    from transformers import Trainer, TrainingArguments

    tiny = tiny_family("qwen2_vl")
    model = model_for(tiny, "eager")
    rows = rows_of(tiny)
    collator = trainer_module.UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=512)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(rows),
        per_device_eval_batch_size=len(rows),
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
    )
    dataset = datasets.Dataset.from_list(rows)
    trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=dataset, eval_dataset=dataset)
    trainer_module._unpacked_for_evaluation(trainer, collator)
    train = next(iter(trainer.get_train_dataloader()))
    evaluation = next(iter(trainer.get_eval_dataloader()))
    assert train["input_ids"].shape[0] == 1 and "position_ids" in train
    assert evaluation["input_ids"].shape[0] == len(rows) and "position_ids" not in evaluation
    unpacked = dict(zoo_cls(model, tiny.processor)(rows))
    _equal({k: v.cpu() for k, v in evaluation.items()}, unpacked)


@pytest.mark.parametrize("family", ["qwen2_vl", "mllama"])
def test_one_padding_free_step_equals_the_unpacked_step(family, trainer_module, zoo_cls):
    """The loss and the gradients of a padding_free batch equal the unpacked batch's (float32)."""
    import torch

    from tests.support.packing_cases import RTOL, gradient_difference

    tiny = tiny_family(family)
    model = model_for(tiny, "eager")
    rows = rows_of(tiny)
    padded = dict(zoo_cls(model, tiny.processor)(rows))
    packed = dict(
        trainer_module.UnslothVisionDataCollator(
            model, tiny.processor, padding_free=True, max_seq_length=_limit(padded)
        )(rows)
    )
    assert packed["input_ids"].shape[0] < len(rows)
    grads = {}
    losses = {}
    for name, batch in (("padded", padded), ("packed", packed)):
        model.zero_grad(set_to_none=True)
        # the summed loss over the batch's targets (each batch's mean times its own target count)
        out = model(**batch)
        targets = int((batch["labels"][:, 1:] != -100).sum())
        (out.loss * targets).backward()
        losses[name] = float(out.loss.detach()) * targets
        grads[name] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert losses["packed"] == pytest.approx(losses["padded"], rel=RTOL)
    worst, where = gradient_difference(grads["packed"], grads["padded"])
    assert worst <= RTOL * 10, (worst, where)
    assert torch.isfinite(torch.tensor(losses["packed"]))


@pytest.mark.heavy
def test_on_cpu_unsloths_stand_in_is_left_alone_quietly():
    """``import unsloth`` on CPU (``UNSLOTH_ZOO_DISABLE_GPU_INIT`` off) puts a stand-in collator in
    ``unsloth.trainer`` (it raises: vision collators need a GPU there). The plugin imported after it
    finds nothing to patch, says so in its status, and warns about nothing."""
    from tests.support import fresh_python

    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "import unsloth, unsloth_multiimage\n"
        "for s in unsloth_multiimage.status():\n"
        "    if s.name.startswith('unsloth_padding_free'): print(s.name, s.decision, s.applied, s.reason)\n"
    )
    proc = fresh_python(code, UNSLOTH_ZOO_DISABLE_GPU_INIT="0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("unsloth_padding_free")]
    assert len(lines) == 2 and all(" absent False " in line and "CPU stand-in" in line for line in lines), lines
    assert "unsloth_padding_free" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.heavy
def test_after_a_real_import_unsloth_padding_free_packs_qwen2_vl():
    """With ``UNSLOTH_ZOO_DISABLE_GPU_INIT=1``, ``import unsloth`` loads its real trainer module on CPU
    (and patches transformers process-wide, hence a fresh interpreter): the plugin imported first,
    unsloth's own collator with ``padding_free=True`` packs Qwen2-VL rows with M-RoPE positions."""
    from tests.support import fresh_python

    code = (
        "import unsloth_multiimage, unsloth\n"
        "from unsloth.trainer import UnslothVisionDataCollator\n"
        "from tests.support.packing_cases import model_for, rows_of, tiny_family\n"
        "tiny = tiny_family('qwen2_vl'); model = model_for(tiny, 'sdpa')\n"
        "batch = UnslothVisionDataCollator(model, tiny.processor, padding_free=True, max_seq_length=4096)(rows_of(tiny))\n"
        "print('rows', len(rows_of(tiny)), 'sequences', batch['input_ids'].shape[0], "
        "'positions', tuple(batch['position_ids'].shape), 'cache', batch['use_cache'])\n"
    )
    proc = fresh_python(code, UNSLOTH_ZOO_DISABLE_GPU_INIT="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    # M-RoPE positions: (3 or, from transformers 5, 4 with the text positions, sequences, length)
    assert re.fullmatch(r"rows 4 sequences 1 positions \([34], 1, \d+\) cache False", last), last

"""Packed training through the real zoo collator and a real trainer (configure(packing=True)).

The tiny Mllama (the project's own, on every release) trains one step through TRL's SFTTrainer with
the REAL ``UnslothVisionDataCollator`` of the installed unsloth_zoo: the batches reaching the model
are packed (position ids, ``use_cache=False``, fewer rows than examples), evaluation batches are
not. On the default row the packed step equals the unpacked one: the same logged loss and the
same weights after one SGD step (transformers 5.17 counts a batch's label tokens after the shift,
so both batches scale the loss alike; 4.46.3 - 5.5.4 count every row's first label too, which a
packed batch ignores, so those rows check the packed step, not its equality).
"""

from __future__ import annotations

import contextlib
import sys

import pytest
from packaging.version import Version

from tests.support import TRANSFORMERS, UNSLOTH_ZOO

# TRL 1.15+ computes the SFT loss with a Triton kernel (Triton's interpreter on CPU). unsloth_zoo's
# CPU import puts a stand-in module in place of `triton` when triton is not imported yet, so the
# real one is imported first, while this module is collected.
with contextlib.suppress(ImportError):
    import triton  # noqa: F401

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

BATCH = 4


@pytest.fixture(scope="module")
def zoo_collator_cls():
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0].UnslothVisionDataCollator


def _dataset(tiny, count=8):
    """A datasets.Dataset of :func:`_rows` (TRL 1.x takes nothing else)."""
    import datasets

    return datasets.Dataset.from_list(_rows(tiny, count))


def _rows(tiny, count=8):
    images = (2, 0, 3, 1)
    out = []
    for r in range(count):
        n = images[r % 4]
        out.append(
            {
                "messages": [
                    {"role": "user", "content": [*([{"type": "image"}] * n), {"type": "text", "text": "which is red"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
                ],
                "images": [tiny.make_tile_image(r, i, (28, 28)) for i in range(n)],
            }
        )
    return out


class Seen:
    """What each forward of the model got: (rows, has position_ids, use_cache, attention_mask dims)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        self.calls.append(
            (
                int(ids.shape[0]),
                kwargs.get("position_ids") is not None,
                kwargs.get("use_cache"),
                None if mask is None else mask.dim(),
            )
        )


def _trl_version():
    import importlib.metadata

    from packaging.version import Version

    return Version(importlib.metadata.version("trl"))


def _trl_cannot_run() -> str | None:
    """Why TRL's SFTTrainer cannot train the packed tiny Mllama here, or None."""
    triton_module = sys.modules.get("triton")
    if triton_module is not None and "unsloth_zoo" in str(getattr(triton_module, "__file__", "")):
        return "unsloth_zoo's stand-in replaced triton before it was imported, and TRL's SFT loss kernel needs triton"
    trl = _trl_version()
    if (trl.major, trl.minor) == (0, 23) and TRANSFORMERS.major < 5:
        # Read in TRL 0.23.0's SFTTrainer.compute_loss: its entropy metric concatenates a 2D mask to
        # attention_mask, and the packed Mllama batch carries the 4D block mask before transformers 5.
        return f"TRL {trl}'s entropy metric takes attention_mask as 2D; packed Mllama batches here carry a 4D mask"
    return None


def _trainer(model, processor, collator, tmp_path, train, evaluation=None, optim="adamw_torch"):
    """TRL's SFTTrainer as Unsloth's vision notebooks build it (dataset as given, no text field);
    transformers' Trainer with the same arguments where TRL cannot run (:func:`_trl_cannot_run`)."""
    if _trl_cannot_run():
        return _plain_trainer(model, collator, tmp_path, train, evaluation, optim)
    import dataclasses

    from trl import SFTConfig, SFTTrainer

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    # TRL before 0.20 reads the processor's model_max_length unless the config names a length.
    length = {name: 4096 for name in ("max_seq_length", "max_length") if name in fields}
    args = SFTConfig(
        **length,
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        max_steps=1,
        learning_rate=1e-2,
        optim=optim,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataset_text_field="",
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    # TRL 0.12 reads tokenizer attributes (padding_side) off processing_class: hand it the tokenizer.
    trl = _trl_version()
    owner = processor.tokenizer if (trl.major, trl.minor) < (0, 13) else processor
    kwargs = {"processing_class": owner} if _takes("processing_class") else {"tokenizer": owner}
    return SFTTrainer(
        model=model, args=args, data_collator=collator, train_dataset=train, eval_dataset=evaluation, **kwargs
    )


def _plain_trainer(model, collator, tmp_path, train, evaluation, optim):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        max_steps=1,
        learning_rate=1e-2,
        optim=optim,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    return Trainer(model=model, args=args, data_collator=collator, train_dataset=train, eval_dataset=evaluation)


def _takes(name):
    import inspect

    from trl import SFTTrainer

    return name in inspect.signature(SFTTrainer.__init__).parameters


def test_one_packed_sft_step_trains_and_evaluation_stays_unpacked(tiny, processor, zoo_collator_cls, tmp_path):
    import torch

    import unsloth_multiimage

    unsloth_multiimage.configure(packing=True, packing_max_seq_length=4096)
    model = tiny.build_model(processor, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = _trainer(
        model, processor, zoo_collator_cls(model, processor), tmp_path, _dataset(tiny), _dataset(tiny, 4)
    )
    seen = Seen(model)
    trainer.train()
    training = list(seen.calls)
    assert training, "the model was never called"
    assert all(rows < BATCH and positions and cache is False for rows, positions, cache, _ in training), training
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if "cross_attn" in n)

    seen.calls.clear()
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))
    assert seen.calls and all(rows == BATCH and not positions and dims == 2 for rows, positions, _, dims in seen.calls)


@pytest.mark.skipif(
    TRANSFORMERS < Version("5.17"),
    reason="this transformers' Trainer counts every row's first label in num_items_in_batch (read in 4.46.3 - "
    "5.5.4: labels.ne(-100); 5.17 counts labels[..., 1:]): an unpacked batch's loss is scaled by more tokens",
)
def test_the_packed_sft_step_equals_the_unpacked_one(tiny, processor, zoo_collator_cls, tmp_path):
    import torch

    import unsloth_multiimage

    after, losses = {}, {}
    for packing in (False, True):
        unsloth_multiimage.configure(packing=packing, packing_max_seq_length=4096)
        model = tiny.build_model(processor, seed=0)
        model.set_attn_implementation("eager")
        trainer = _trainer(
            model,
            processor,
            zoo_collator_cls(model, processor),
            tmp_path / str(packing),
            _dataset(tiny, 4),
            optim="sgd",
        )
        seen = Seen(model)
        trainer.train()
        assert [rows < BATCH for rows, *_ in seen.calls] == [packing]
        losses[packing] = [h["loss"] for h in trainer.state.log_history if "loss" in h][0]
        after[packing] = {n: p.detach().clone() for n, p in model.named_parameters()}
    start = {n: p.detach() for n, p in tiny.build_model(processor, seed=0).named_parameters()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    for name, weight in after[False].items():
        step = weight - start[name]
        scale = float(step.abs().max())
        if scale == 0:
            continue
        rounding = 4 * torch.finfo(weight.dtype).eps * float(weight.abs().max())  # the weights' own float32 steps
        assert float((after[True][name] - weight).abs().max()) <= 1e-4 * scale + rounding, name


def _takes_max_seq_length(collator_cls) -> bool:
    """unsloth_zoo before 2025.9 has no max_seq_length argument (packing then needs the setting)."""
    import inspect

    return "max_seq_length" in inspect.signature(collator_cls.__init__).parameters


def test_outside_a_training_dataloader_the_collator_does_not_pack(tiny, processor, model, zoo_collator_cls):
    import unsloth_multiimage
    from unsloth_multiimage.collate.train_packing import packing_for

    unsloth_multiimage.configure(packing=True, packing_max_seq_length=512)
    collator = zoo_collator_cls(model, processor)
    plain = collator(_rows(tiny, 4))
    assert plain["input_ids"].shape[0] == 4 and "position_ids" not in plain
    with packing_for(model):
        packed = collator(_rows(tiny, 4))
    assert packed["input_ids"].shape[0] == 1 and packed["use_cache"] is False
    assert int((packed["labels"] != -100).sum()) <= int((plain["labels"][:, 1:] != -100).sum())


def test_the_longest_sequence_comes_from_the_collator_else_the_setting_else_an_error(
    tiny, processor, model, zoo_collator_cls, monkeypatch
):
    import unsloth_multiimage
    from unsloth_multiimage.collate.pack_attention import PackingRefused
    from unsloth_multiimage.collate.train_packing import packing_for

    rows = _rows(tiny, 4)
    lengths = [int(n) for n in zoo_collator_cls(model, processor)(rows)["attention_mask"].sum(1)]
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_PACKING", "1")
    assert unsloth_multiimage.get_settings().packing is True
    with packing_for(model):
        with pytest.raises(PackingRefused, match=r"no max_seq_length.*packing_max_seq_length"):
            zoo_collator_cls(model, processor)(rows)
        unsloth_multiimage.configure(packing_max_seq_length=max(lengths))
        assert zoo_collator_cls(model, processor)(rows)["input_ids"].shape[0] > 1
        if _takes_max_seq_length(zoo_collator_cls):
            unsloth_multiimage.configure(packing_max_seq_length=10)  # the collator's own wins
            collator = zoo_collator_cls(model, processor, max_seq_length=sum(lengths))
            assert collator(rows)["input_ids"].shape[0] == 1

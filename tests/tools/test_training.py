"""End to end: transformers' Trainer + the real UnslothVisionDataCollator + the tiny model, on CPU."""

from __future__ import annotations

import pytest

from tests.support import UNSLOTH_ZOO

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")


def _dataset(tiny):
    img = lambda r, i: tiny.make_tile_image(r % 30, i, (28 + 7 * i, 28))  # noqa: E731
    rows = []
    for r in range(16):
        n = r % 4
        q = {"type": "text", "text": "which image has more red squares"}
        a = {
            "role": "assistant",
            "content": [{"type": "text", "text": ["the first", "the second", "the third", "no"][n - 1]}],
        }
        if r % 3 == 0:  # images embedded in the message content, multi-turn
            content = [{"type": "image", "image": img(r, i)} for i in range(n)]
            rows.append(
                {"messages": [{"role": "user", "content": [*content, q]}, a, {"role": "user", "content": [q]}, a]}
            )
        else:  # an images column with bare placeholders
            rows.append(
                {
                    "messages": [{"role": "user", "content": [*([{"type": "image"}] * n), q]}, a],
                    "images": [img(r, i) for i in range(n)],
                }
            )
    return rows


def test_trainer_runs_five_steps_and_moves_vision_and_cross_attention_weights(tiny, processor, model, tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    from tests.support.zoo import load_vision_utils

    collator = load_vision_utils()[0].UnslothVisionDataCollator(model, processor)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=5,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(tiny), data_collator=collator)
    result = trainer.train()
    assert result.global_step == 5
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 5 and all(torch.isfinite(torch.tensor(losses)))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any("vision_model" in n for n in changed), "the vision tower did not train"
    assert any("cross_attn" in n for n in changed), "the cross-attention layers did not train"

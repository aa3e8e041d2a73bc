"""Generation through ``prepare_inputs`` on every family of tests/support/tiny_vlms/: the prompt holds every
coded image in its slot, in order (read back by the family's decoder, as tests/adapters/test_families.py
reads collator batches), ``model.generate`` runs on it, and each image reaches the model's output.

Llama 3.2 Vision: the logits of each generated token (incremental decoding, KV cache, the
cross-attention mask extended by transformers' generation) equal those of ONE teacher-forced
forward over the same full sequence built the training way (the real collator, or the patched
processor where unsloth_zoo is absent), with both ``mllama_cross_attention`` modes, on a prompt
whose three images are three separate groups (where the two masks differ).
"""

from __future__ import annotations

from typing import Any

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from tests.support.inference_cases import EXPECTED, IMG, model_of, tiny_family, user


def _generate(model: Any, inputs: Any, new_tokens: int) -> Any:
    import torch

    model.eval()
    try:
        with torch.no_grad():
            return model.generate(
                **inputs, max_new_tokens=new_tokens, do_sample=False, output_logits=True, return_dict_in_generate=True
            )
    finally:
        model.train()


@pytest.mark.parametrize("family", list(EXPECTED))
def test_generate_on_a_three_image_prompt_sees_every_image(family):
    """The prompt holds each coded image in its slot, generate runs on it, and each image reaches
    the model: swapping image k for another changes the first generated token's logits (read at
    the output, whatever route the release takes to the vision tower: 5.24 encodes the images
    before the first forward)."""
    import torch

    from tests.support.tiny_vlms import make_tile_image

    tiny = tiny_family(family)
    model = model_of(tiny)
    images = [make_tile_image(0, i, tiny.image_size) for i in range(3)]
    messages = [user(*[IMG] * 3)]
    inputs = unsloth_multiimage.prepare_inputs(tiny.processor, messages, images, model=model)
    assert tiny.decode(inputs) == [(0, 0), (0, 1), (0, 2)]  # every image in its slot, in order
    n = inputs["input_ids"].shape[1]
    out = _generate(model, inputs, 3)
    assert out.sequences.shape[0] == 1 and n < out.sequences.shape[1] <= n + 3
    first = out.logits[0]
    blind = []
    for k in range(3):
        swapped = [make_tile_image(1, i, tiny.image_size) if i == k else img for i, img in enumerate(images)]
        other = unsloth_multiimage.prepare_inputs(tiny.processor, messages, swapped, model=model)
        assert tiny.decode(other)[k] == (1, k)
        logits = _generate(model, other, 1).logits[0]
        if torch.allclose(logits, first) and _forward_is_blind(model, inputs, other):
            blind.append(k)  # the tiny model itself ignores these pixels: nothing to read at its output
            continue
        assert not torch.allclose(logits, first), f"image {k} does not reach the model's output in generate"
    if blind:
        pytest.skip(
            f"the tiny {family} model's logits do not depend on the pixels of image(s) {blind} even in a plain "
            f"forward (a fixture limit): generate ran on a prompt holding every image in its slot"
        )


def _forward_is_blind(model: Any, a: Any, b: Any) -> bool:
    """True when one forward gives the same logits for the inputs ``a`` and ``b`` (other pixels)."""
    import torch

    with torch.no_grad():
        return bool(torch.allclose(model(**a).logits, model(**b).logits))


# ------------------------------------------------------------------------- Mllama: incremental == teacher-forced
def _separate_groups(tiny: Any) -> tuple[list, list]:
    from tests.support.tiny_vlms import make_tile_image

    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    content = [IMG, text("first"), IMG, text("second"), IMG, text("which image is red")]
    return [{"role": "user", "content": content}], [make_tile_image(0, i, tiny.image_size) for i in range(3)]


def _training_batch(tiny: Any, model: Any, row: dict) -> Any:
    """The full sequence built the training way: the real collator, or where unsloth_zoo is absent
    the patched processor on the rendered chat (what the plugin's collator path calls)."""
    if UNSLOTH_ZOO is not None:
        from tests.support.zoo import load_vision_utils

        return load_vision_utils()[0].UnslothVisionDataCollator(model, tiny.processor)([row])
    return unsloth_multiimage.prepare_inputs(tiny.processor, row, add_generation_prompt=False, model=model)


@pytest.mark.parametrize("mode", ["latest", "cumulative"])
def test_mllama_generated_logits_equal_one_teacher_forced_forward_of_the_training_sequence(mode):
    import torch

    tiny = tiny_family("mllama")
    model = model_of(tiny)
    unsloth_multiimage.configure(mllama_cross_attention=mode)
    messages, images = _separate_groups(tiny)
    inputs = unsloth_multiimage.prepare_inputs(tiny.processor, messages, images, model=model)
    n = inputs["input_ids"].shape[1]
    tokenizer = tiny.processor.tokenizer
    specials = sorted({*tokenizer.all_special_ids, tokenizer.convert_tokens_to_ids("<|image|>")})
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=3,
                min_new_tokens=3,
                do_sample=False,
                suppress_tokens=specials,  # plain words, so that the answer's text re-tokenizes to the same ids
                output_logits=True,
                return_dict_in_generate=True,
            )
            new = out.sequences[0, n:]
            answer = tokenizer.decode(new.tolist())
            row = {
                "messages": [*messages, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                "images": images,
            }
            batch = _training_batch(tiny, model, row)
            assert batch["input_ids"][0, : n + 3].equal(out.sequences[0]), (
                "the training sequence is not prompt + answer"
            )
            assert batch["cross_attention_mask"][0, :n].equal(inputs["cross_attention_mask"][0])
            forward = {k: v for k, v in batch.items() if k != "labels"}
            teacher = model(**forward).logits[0, n - 1 : n + 2]
    finally:
        model.train()
    incremental = torch.stack([step[0] for step in out.logits])
    torch.testing.assert_close(incremental, teacher, rtol=1e-4, atol=1e-4)
    # the mask training gives the answer tokens is the prompt's last position repeated: what generate extends
    cam = batch["cross_attention_mask"][0]
    assert all(cam[n + i].equal(cam[n - 1]) for i in range(3))
    if mode == "cumulative":
        assert bool(cam[n - 1, :3, 0].all()), "the answer sees every image"
    else:
        assert cam[n - 1, :3, 0].tolist() == [0, 0, 1], "the answer sees the latest group only"

"""A video's frames stay visible to the text after them, whatever the frame-label setting, on Llama 3.2
Vision's cross-attention mask, through the REAL ``UnslothVisionDataCollator`` (patched): without
labels the frames are one image group, which the ``latest`` mask shows whole; with labels (text
between the frames) the ``cumulative`` mask shows every frame; labels under the ``latest`` mask,
which would show the question the last frame alone, are refused naming both settings. The video
is a list of coded frames (no decoder needed)."""

from __future__ import annotations

import pytest

import unsloth_multiimage
from unsloth_multiimage.errors import HiddenFramesError

FRAMES = 3


def _row(tiny) -> dict:
    frames = [tiny.make_tile_image(0, k) for k in range(FRAMES)]
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "video", "video": frames}, {"type": "text", "text": "which image is red"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
        ]
    }


def _question_sees(batch, processor) -> list[int]:
    """The image slots the last prompt token (before the answer) attends, first tile."""
    ids = batch["input_ids"][0].tolist()
    header = processor.tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    last_header = max(i for i, t in enumerate(ids) if t == header)
    mask = batch["cross_attention_mask"][0, last_header - 1, :, 0]
    return [k for k, v in enumerate(mask.tolist()) if v]


@pytest.mark.parametrize(
    ("label", "mode"),
    [(None, "latest"), (None, "cumulative"), ("Frame {n}:", "cumulative"), ("Frame {n}:", "latest")],
)
def test_every_frame_stays_visible_to_the_question_or_the_row_is_refused(zoo_collator, processor, tiny, label, mode):
    unsloth_multiimage.configure(video="frames", video_frame_label=label, mllama_cross_attention=mode)
    row = _row(tiny)
    if label is not None and mode == "latest":
        with pytest.raises(HiddenFramesError) as info:
            zoo_collator([row])
        text = str(info.value)
        assert "row 0" in text and "video_frame_label='Frame {n}:'" in text and "mllama_cross_attention" in text
        assert 'Fix: configure(mllama_cross_attention="cumulative")' in text
        return
    batch = zoo_collator([row])
    assert int((batch["aspect_ratio_ids"] > 0).sum()) == FRAMES
    assert _question_sees(batch, processor) == list(range(FRAMES)), (label, mode)


def test_the_dry_run_refuses_the_row_as_the_collator_does(processor, tiny):
    from unsloth_multiimage.tools.dry_run import DryRun

    unsloth_multiimage.configure(video="frames", video_frame_label="Frame {n}:")
    report = DryRun(processor).check(_row(tiny), 5)
    assert report.verdict == "error" and "row 5 has a video" in report.note
    unsloth_multiimage.configure(mllama_cross_attention="cumulative")
    assert DryRun(processor).check(_row(tiny), 5).verdict != "error"

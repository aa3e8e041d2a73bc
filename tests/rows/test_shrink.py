"""Shrinking one row (rows/shrink.py): a video's frames dropped evenly with their labels, the
frame marks the pipeline adds while a row fitter runs (and removes before upstream), and the pixel
budget applied exactly as ``max_pixels_per_example`` applies it."""

from __future__ import annotations

import pytest

from unsloth_multiimage import configure, get_settings
from unsloth_multiimage.rows.chat import image_parts, messages_of
from unsloth_multiimage.rows.pipeline import prepare_batch
from unsloth_multiimage.rows.policy import apply_policies
from unsloth_multiimage.rows.shrink import fit_pixels, frame_groups, keep_frames, kept_frames, marked, unmark

pytest.importorskip("PIL")


def _frames(n, row=0, size=(16, 12)):
    from tests.support.tiles import make_tile_image

    return [make_tile_image(row, i, size) for i in range(n)]


def _video_row(n_first=6, n_second=3):
    """A row with an image, a video of ``n_first`` frames, text, and a video of ``n_second``."""
    from tests.support.tiles import make_tile_image

    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": make_tile_image(9, 0, (20, 20))},
                    {"type": "video", "video": _frames(n_first, 1)},
                    {"type": "text", "text": "and then"},
                    {"type": "video", "video": _frames(n_second, 2)},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
    }


def _codes(images):
    out = []
    for img in images:
        r, g, _b = img.getpixel((0, 0))
        out.append(((r - 8) // 8, (g - 8) // 8))
    return out


@pytest.mark.parametrize(
    ("count", "limit", "kept"), [(8, 3, [0, 4, 7]), (6, 2, [0, 5]), (5, 5, [0, 1, 2, 3, 4]), (4, 1, [0])]
)
def test_kept_frames_are_spread_evenly_first_and_last_kept(count, limit, kept):
    assert kept_frames(count, limit) == kept


def test_the_pipeline_marks_frames_for_a_fitter_and_unmarks_them_after():
    configure(video="frames", video_sampling="uniform", video_frame_label="Frame {n}:")
    seen = {}

    def fit(example, plan):
        seen["groups"] = frame_groups(example)
        seen["marked"] = marked(example)
        return example, plan

    (prepared,) = prepare_batch([_video_row()], fit_row=fit)
    assert seen["marked"] and seen["groups"] == [[1, 2, 3, 4, 5, 6], [7, 8, 9]]  # the image is no frame
    assert not marked(prepared.example) and unmark(prepared.example) is prepared.example
    (plain,) = prepare_batch([_video_row()])  # without a fitter: never marked
    assert not marked(plain.example) and plain.example == prepared.example


def test_dropping_frames_keeps_them_evenly_with_their_labels():
    configure(video="frames", video_sampling="uniform", video_frame_label="Frame {n}:")
    captured = {}

    def fit(example, plan):
        captured["example"], captured["plan"] = example, plan
        return example, plan

    prepare_batch([_video_row(6, 3)], fit_row=fit)
    example, plan = captured["example"], captured["plan"]
    new, new_plan, dropped = keep_frames(example, plan, 2)
    assert dropped == 6 - 2 + 3 - 2
    assert _codes(new_plan.images) == [(9, 0), (1, 0), (1, 5), (2, 0), (2, 2)]
    assert [p.get("image") for p in image_parts(messages_of(new))] == list(new_plan.images)
    texts = [p["text"] for m in messages_of(new) for p in m["content"] if p.get("type") == "text"]
    # each kept frame keeps its label (its number in the video); the dropped frames' labels are gone
    assert texts == ["Frame 1:", "Frame 6:", "and then", "Frame 1:", "Frame 3:", "ok"]
    assert keep_frames(example, plan, 6)[2] == 0 and keep_frames(example, plan, 6)[0] is example
    assert _codes(plan.images)[1:7] == [(1, i) for i in range(6)]  # the input is not modified
    with pytest.raises(ValueError, match="at least one frame"):
        keep_frames(example, plan, 0)


def test_fit_pixels_is_the_pixel_budget_policy():
    from tests.support.tiles import make_tile_image

    row = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
        "images": [make_tile_image(0, 0, (80, 60)), make_tile_image(0, 1, (40, 100))],
    }
    (prepared,) = prepare_batch([row])
    new, plan = fit_pixels(prepared.example, prepared.plan, 3000, get_settings())
    configure(max_pixels_per_example=3000)
    [expected], [expected_plan] = apply_policies([prepared.example], [prepared.plan], get_settings())
    assert [img.size for img in plan.images] == [img.size for img in expected_plan.images]
    assert sum(w * h for w, h in (img.size for img in plan.images)) <= 3000
    assert new["images"] == list(plan.images) and len(new["images"]) == 2
    assert fit_pixels(prepared.example, prepared.plan, 10**6, get_settings())[0] is prepared.example

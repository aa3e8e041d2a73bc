"""Videos as frames through the REAL ``UnslothVisionDataCollator`` of the installed unsloth_zoo.

One batch per family: row 0 carries its video in the part (``{"type": "video", "video": path}``),
row 1 has a bare ``{"type": "video"}`` part and a ``videos`` column. Each video is 8 solid frames
(PyAV, lossless) whose colours code ``(row, frame)``; with ``video_max_frames=3`` uniform sampling
keeps frames 0, 4 and 7. Checked per family: the adapter counts 3 images per row in ``input_ids``,
and the pixel decoder of tests/support/tiny_vlms/ reads the six frames back in their rows and in time
order. Under ``strategy="grid"`` Mllama gets one storyboard canvas per video.

Cost: every family on the default row (the newest zoo); elsewhere Mllama only (on
tf4.57-zoo2025.12.3 that is the old release whose column path sends the first image only).
"""

from __future__ import annotations

import os

import pytest

from tests.support.family_cases import EXPECTED, assistant, counts, model_of, tiny_of, upstream_failure

videokit = pytest.importorskip("tests.support.videokit")

DEFAULT_ROW = "tf5.17-zoo2026.10"
FULL = os.environ.get("UMI_COMPAT_ROW", DEFAULT_ROW) in ("", DEFAULT_ROW)
FAMILIES = sorted(EXPECTED) if FULL else ["mllama"]
KEPT = [0, 4, 7]  # uniform sampling of 3 out of 8 frames


@pytest.fixture(scope="module")
def vision_utils():
    from tests.support import UNSLOTH_ZOO

    if UNSLOTH_ZOO is None:
        pytest.skip("unsloth_zoo is not installed on this row")
    from tests.support.zoo import load_vision_utils

    return load_vision_utils()[0]


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """One lossless 8-frame clip per row number (0, 1), written once per session."""
    folder = tmp_path_factory.mktemp("clips")
    return [videokit.write(folder, f"row{r}", row=r, size=(64, 48)) for r in (0, 1)]


def video_rows(clips: list[str]) -> list[dict]:
    def user(part: dict) -> dict:
        return {"role": "user", "content": [part, {"type": "text", "text": "what happens"}]}

    return [
        {"messages": [user({"type": "video", "video": clips[0]}), assistant()]},
        {"messages": [user({"type": "video"}), assistant()], "videos": [clips[1]]},
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_video_frames_reach_the_model_in_time_order(family, clips, vision_utils):
    tiny = tiny_of(family)
    known = upstream_failure(family)
    if known:
        pytest.skip(known[1])
    collator = vision_utils.UnslothVisionDataCollator(model_of(tiny), tiny.processor)
    from unsloth_multiimage.settings import overriding

    with overriding(video="frames", video_sampling="uniform", video_max_frames=3):
        batch = collator(video_rows(clips))
    assert counts(tiny, batch) == [3, 3]
    assert tiny.decode(batch) == [(r, k) for r in (0, 1) for k in KEPT]


def test_mllama_under_grid_gets_one_storyboard_per_video(clips, vision_utils):
    """Llama 3.2 Vision in the single-image regime: each video is one canvas of its frames."""
    from unsloth_multiimage.rows.grid import cell_boxes
    from unsloth_multiimage.rows.pipeline import prepare_batch
    from unsloth_multiimage.settings import overriding

    tiny = tiny_of("mllama")
    collator = vision_utils.UnslothVisionDataCollator(model_of(tiny), tiny.processor)
    settings = dict(video="frames", video_sampling="uniform", video_max_frames=4, strategy="grid", grid_gap=0)
    with overriding(**settings):
        batch = collator(video_rows(clips))
        prepared = prepare_batch(video_rows(clips))
    assert counts(tiny, batch) == [1, 1]
    for p in prepared:
        (board,) = p.plan.images
        _size, boxes = cell_boxes([(64, 48)] * 4, gap=0)
        cells = [videokit.code_of(board.crop(box)) for box in boxes]
        assert cells == [(p.row, k) for k in (0, 2, 5, 7)]

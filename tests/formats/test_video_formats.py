"""Video dataset layouts converted (``formats.to_messages``) and trained through the REAL collator
of the installed unsloth_zoo (tiny Mllama): LLaVA-Video / ShareGPT4Video rows (a ``video`` path and a
``<video>`` tag), a folder of frame files (natural order), and LLaMA-Factory rows mixing ``<video>``
and ``<image>`` tags. Each video's frames are coded ``(row, k)`` and must land in the row's image
slots in time order, beside a plain image row. Runs on every zoo row of the matrix (one tiny model)."""

from __future__ import annotations

import pytest

import unsloth_multiimage
from tests.support import UNSLOTH_ZOO
from tests.support.rowgen import assert_row_ok, companion

videokit = pytest.importorskip("tests.support.videokit")
pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """clip.mkv (3 frames coded (0, 0..2)) and frames/ (f1, f2, f10.png coded (0, 0..2))."""
    root = tmp_path_factory.mktemp("umi_video_rows")
    videokit.write(root, "clip", n_frames=3, size=(28, 28))
    (root / "frames").mkdir()
    for k, name in enumerate(("f1", "f2", "f10")):
        videokit.Image.new("RGB", (28, 28), videokit.frame_colour(0, k)).save(root / "frames" / f"{name}.png")
    return root


@pytest.fixture(autouse=True)
def frames_settings():
    unsloth_multiimage.configure(video="frames", video_sampling="uniform", video_max_frames=3)


def llava_video(video: str, question: str = "<video>\nWhat happens in the video?") -> dict:
    return {
        "id": "v0",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "It turns green."}],
        "video": video,
        "data_source": "tiny",
    }


@pytest.mark.parametrize("video", ["clip.mkv", "frames"])
def test_a_llava_video_row_converts_and_trains_with_its_frames_in_order(video, tiny, processor, zoo_collator, folder):
    from unsloth_multiimage import formats

    raw = llava_video(video)
    assert formats.detect(raw) == "llava"
    with pytest.raises(ValueError, match=r"row 0 .*convert_dataset"):
        zoo_collator([raw, companion("messages", 1, folder)])
    converted = formats.to_messages(raw, row=0, image_root=folder)
    assert converted["videos"] == [str(folder / video)] and converted["images"] == []
    assert converted["messages"][0]["content"][0] == {"type": "video", "text": None}
    batch = zoo_collator([converted, companion("messages", 1, folder)])
    assert_row_ok(tiny, processor, batch, 0, 3)
    assert_row_ok(tiny, processor, batch, 1, 1)


def test_a_llamafactory_row_with_a_video_and_an_image_keeps_their_order(tiny, processor, zoo_collator, folder):
    from unsloth_multiimage import formats

    image = folder / "image.png"
    videokit.Image.new("RGB", (28, 28), videokit.frame_colour(0, 3)).save(image)
    raw = {
        "messages": [
            {"role": "user", "content": "<video>What happens, and is it like <image>?"},
            {"role": "assistant", "content": "Yes."},
        ],
        "videos": ["clip.mkv"],
        "images": ["image.png"],
    }
    converted = formats.to_messages(raw, row=0, image_root=folder)
    kinds = [p["type"] for p in converted["messages"][0]["content"]]
    assert kinds == ["video", "text", "image", "text"]
    batch = zoo_collator([converted, companion("messages", 1, folder)])
    assert_row_ok(tiny, processor, batch, 0, 4)  # frames (0, 0..2), then the image (0, 3)


def test_video_tags_and_videos_must_agree():
    from unsloth_multiimage import formats

    with pytest.raises(formats.ImageTagMismatchError, match=r"row 7 .* 2 video placeholder\(s\) .* but 1 video"):
        formats.to_messages(llava_video("a.mp4", "<video><video> what?"), row=7)
    untagged = formats.to_messages(llava_video("a.mp4", "what happens?"), row=0)
    assert [p["type"] for p in untagged["messages"][0]["content"]] == ["video", "text"]  # put first, like images

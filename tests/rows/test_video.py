"""Videos in, frames out (rows/video.py and its pipeline stage): real PyAV decoding of small videos
made in code (tests/support/videokit.py), sampling, time windows, labels, the ``videos`` column, the frames
counted as images by the cap and the budget, ``native`` left alone, and errors naming the row."""

from __future__ import annotations

import os
import sys

import pytest

import unsloth_multiimage
from tests.support import fresh_python
from unsloth_multiimage.errors import ImageCountError, VideoLoadError
from unsloth_multiimage.rows import video
from unsloth_multiimage.rows.pipeline import prepare_batch
from unsloth_multiimage.settings import Settings

videokit = pytest.importorskip("tests.support.videokit")
Image = pytest.importorskip("PIL.Image")

UNIFORM = Settings(video="frames", video_sampling="uniform")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """8 lossless frames, 64x48, 4 frames a second (2 s)."""
    return videokit.write(tmp_path_factory.mktemp("clip"))


def codes(frames) -> list:
    return [videokit.code_of(f.image) for f in frames]


def row_with(*parts, **columns) -> dict:
    content = [*parts, {"type": "text", "text": "what happens"}]
    return {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": "it changes colour"}]},
        ],
        **columns,
    }


# ------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize(
    ("n", "fps", "max_frames", "sampling", "expected"),
    [
        (8, 2.0, 16, "fps", [0, 2, 5, 7]),  # 2 s at 2 fps: 4 frames spread over the clip
        (8, 2.0, 3, "fps", [0, 4, 7]),  # capped by max_frames
        (8, 0.1, 16, "fps", [0]),  # at least one frame
        (8, 99.0, 16, "uniform", list(range(8))),
        (8, 2.0, 3, "uniform", [0, 4, 7]),
        (1, 2.0, 3, "uniform", [0]),
        (0, 2.0, 3, "uniform", []),
    ],
)
def test_sample_indices(n, fps, max_frames, sampling, expected):
    times = [k / 4 for k in range(n)]
    assert video.sample_indices(times, fps=fps, max_frames=max_frames, sampling=sampling) == expected


def test_sampled_indices_are_increasing_and_distinct_for_every_count():
    for total in range(1, 40):
        for cap in range(1, 45):
            got = video.sample_indices([k / 3 for k in range(total)], fps=1, max_frames=cap, sampling="uniform")
            assert got == sorted(set(got)) and len(got) == min(total, cap) and got[0] == 0
            assert got[-1] == (total - 1 if len(got) > 1 else 0)


# ------------------------------------------------------------------------------------ reading
def test_every_way_of_giving_a_file_decodes_the_same_frames(clip):
    data = open(clip, "rb").read()
    ways = [clip, "file://" + clip, data, {"bytes": data, "path": None}, {"bytes": None, "path": clip}]
    for way in ways:
        frames = video.read_video(way, 0, 0, Settings())  # fps sampling: 2 a second
        assert codes(frames) == [(0, 0), (0, 2), (0, 5), (0, 7)], type(way)
        assert [f.time for f in frames] == [0.0, 0.5, 1.25, 1.75]
        assert all(f.image.mode == "RGB" and f.image.size == (64, 48) for f in frames)


def test_an_mp4_decodes_in_time_order():
    frames = video.read_video(videokit.encode(kind="mp4"), 0, 0, UNIFORM)
    assert [videokit.nearest_code(f.image) for f in frames] == [(0, k) for k in range(8)]


def test_video_start_and_end_keep_the_window(clip):
    frames = video.read_video(clip, 0, 0, UNIFORM, {"video_start": 0.5, "video_end": 1.25})
    assert codes(frames) == [(0, 2), (0, 3), (0, 4), (0, 5)]
    assert [f.time for f in frames] == [0.5, 0.75, 1.0, 1.25]


def test_a_parts_own_fps_nframes_and_max_frames_win(clip):
    assert len(video.read_video(clip, 0, 0, Settings(), {"fps": 4})) == 8
    assert codes(video.read_video(clip, 0, 0, Settings(), {"nframes": 2})) == [(0, 0), (0, 7)]
    assert len(video.read_video(clip, 0, 0, UNIFORM, {"max_frames": 5})) == 5


def test_a_folder_of_frames_is_read_in_natural_order(tmp_path):
    for k in range(12):
        Image.new("RGB", (16, 16), videokit.frame_colour(0, k)).save(tmp_path / f"frame_{k + 1}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = video.read_video(str(tmp_path), 0, 0, Settings(video_sampling="uniform", video_max_frames=12))
    assert codes(frames) == [(0, k) for k in range(12)]  # frame_2 before frame_10
    assert [f.time for f in frames[:3]] == [0.0, 0.5, 1.0]  # taken at video_fps (2)


def test_a_list_of_frames_is_a_video(clip):
    frames = [Image.new("RGB", (16, 16), videokit.frame_colour(1, k)) for k in range(6)]
    got = video.read_video(frames, 0, 0, Settings(video_sampling="uniform", video_max_frames=3))
    assert codes(got) == [(1, 0), (1, 3), (1, 5)]


# ------------------------------------------------------------------------------------ errors
def test_unreadable_missing_and_empty_videos_name_the_row_the_video_and_the_fix(tmp_path, clip):
    cases = [
        (b"this is not a video" * 10, "cannot be decoded"),
        (str(tmp_path / "missing.mp4"), "no such video file"),
        ({"bytes": None, "path": None}, "without 'bytes' or 'path'"),
        ([], "has no frames"),
        (str(tmp_path), "folder without frame files"),
        ("https://example.com/v.mp4", "URLs are not fetched"),
        (3.5, "not a video"),
    ]
    for value, found in cases:
        with pytest.raises(VideoLoadError, match="Fix:") as info:
            video.read_video(value, 4, 1, Settings())
        assert "row 4, video 1" in str(info.value) and found in str(info.value), str(info.value)
        assert info.value.row == 4
    with pytest.raises(VideoLoadError, match=r"row 2, video 0 .* has no frame between 5.0 s and 6.0 s .*widen"):
        video.read_video(clip, 2, 0, Settings(), {"video_start": 5, "video_end": 6})


def test_without_pyav_the_error_says_how_to_install_it(clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(VideoLoadError, match=r"row 3, video 0 .*PyAV is not installed.*unsloth-multiimage\[video\]"):
        prepare_batch([row_with({"type": "video", "video": clip})], UNIFORM, first_row=3)
    frames = [Image.new("RGB", (16, 16), "red")] * 2  # frames need no decoder
    assert len(prepare_batch([row_with({"type": "video", "video": frames})], UNIFORM)[0].plan.images) == 2


def test_rows_never_import_pyav_until_a_video_is_met():
    code = (
        "import sys, unsloth_multiimage.rows.pipeline, unsloth_multiimage.rows.video as v\n"
        "from unsloth_multiimage.settings import Settings\n"
        "from PIL import Image\n"
        "row = {'messages': [{'role': 'user', 'content': [{'type': 'image', 'image': Image.new('RGB', (8, 8))}]}]}\n"
        "unsloth_multiimage.rows.pipeline.prepare_batch([row], Settings(video='frames'))\n"
        "print('av' in sys.modules)\n"
    )
    result = fresh_python(code, UNSLOTH_MULTIIMAGE_DISABLE="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------------------------ the row
def test_each_video_becomes_labelled_image_parts_in_place(clip):
    row = row_with({"type": "text", "text": "before"}, {"type": "video"}, videos=[clip])
    settings = Settings(
        video="frames", video_max_frames=3, video_sampling="uniform", video_frame_label="Frame {n} at {t:.2f} s:"
    )
    out = video.expand_videos(row, 0, settings)
    assert "videos" not in out and row["videos"] == [clip]  # the input is not modified
    content = out["messages"][0]["content"]
    texts = [p["text"] for p in content if p["type"] == "text"]
    assert texts == ["before", "Frame 1 at 0.00 s:", "Frame 2 at 1.00 s:", "Frame 3 at 1.75 s:", "what happens"]
    assert [p["type"] for p in content[1:7]] == ["text", "image"] * 3
    assert [videokit.code_of(p["image"]) for p in content if p["type"] == "image"] == [(0, 0), (0, 4), (0, 7)]
    assert out["messages"][1] == row["messages"][1]


def test_a_row_without_video_is_the_same_object():
    row = row_with({"type": "image", "image": Image.new("RGB", (8, 8))})
    assert video.expand_videos(row, 0, UNIFORM) is row


def test_bare_video_parts_and_the_videos_column_must_agree(clip):
    with pytest.raises(ImageCountError, match=r"row 5 has 2 bare .* but 1 video\(s\) in its `videos` column"):
        prepare_batch([row_with({"type": "video"}, {"type": "video"}, videos=[clip])], UNIFORM, first_row=5)
    with pytest.raises(ImageCountError, match=r"row 0 has 0 bare .* but 1 video"):
        prepare_batch([row_with(videos=clip)], UNIFORM)


def test_frames_share_the_row_with_images_in_placeholder_order(clip):
    image = Image.new("RGB", (8, 8), videokit.frame_colour(9, 9))
    row = row_with({"type": "image"}, {"type": "video", "video": clip}, images=[image])
    (p,) = prepare_batch([row], Settings(video="frames", video_max_frames=2, video_sampling="uniform"))
    assert [videokit.code_of(i) for i in p.plan.images] == [(9, 9), (0, 0), (0, 7)]
    assert p.given == 3


def test_frames_count_toward_max_images_and_the_pixel_budget(clip):
    row = row_with({"type": "video", "video": clip})
    with pytest.raises(ImageCountError, match="row 0 has 4 images but max_images=2"):
        prepare_batch([row], Settings(video="frames", max_images=2))
    (kept,) = prepare_batch([row], Settings(video="frames", max_images=2, on_excess="keep_last"))
    assert [videokit.code_of(i) for i in kept.plan.images] == [(0, 5), (0, 7)]
    (small,) = prepare_batch([row], Settings(video="frames", max_pixels_per_example=4 * 32 * 24))
    assert [i.size for i in small.plan.images] == [(32, 24)] * 4


def test_a_single_image_family_is_told_to_use_the_grid(clip):
    with pytest.raises(ImageCountError, match=r"row 0 has 4 images, but onlyone models .*strategy=\"grid\""):
        prepare_batch(
            [row_with({"type": "video", "video": clip})], Settings(video="frames"), single_image_family="onlyone"
        )
    (p,) = prepare_batch(
        [row_with({"type": "video", "video": clip})], Settings(video="frames", strategy="grid"), single_image_family="x"
    )
    assert len(p.plan.images) == 1 and p.plan.images[0].size == (64 * 2 + 4, 48 * 2 + 4)  # 4 frames, 2x2


@pytest.mark.parametrize(("mode", "native"), [("native", False), ("native", True), ("auto", True)])
def test_native_leaves_the_video_part_to_the_processor(clip, mode, native):
    row = row_with({"type": "video", "video": clip, "video_start": 0.5})
    (p,) = prepare_batch([row], Settings(video=mode), native_video=native)
    assert p.example is row and p.plan.images == ()


def test_auto_makes_frames_where_the_family_has_no_native_video(clip):
    (p,) = prepare_batch([row_with({"type": "video", "video": clip})], Settings(), native_video=False)
    assert len(p.plan.images) == 4


# ------------------------------------------------------------------------------------ settings
def test_video_settings_from_the_environment_and_their_checks(monkeypatch):
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_VIDEO_FPS", "1.5")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_VIDEO_MAX_FRAMES", "6")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_VIDEO", "frames")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_VIDEO_FRAME_LABEL", "Frame {n}:")
    got = unsloth_multiimage.get_settings()
    assert (got.video_fps, got.video_max_frames, got.video, got.video_frame_label) == (1.5, 6, "frames", "Frame {n}:")
    for bad in (
        dict(video="movie"),
        dict(video_fps=0),
        dict(video_max_frames=0),
        dict(video_sampling="random"),
        dict(video_frame_label="Frame {index}"),
    ):
        with pytest.raises(ValueError):
            unsloth_multiimage.configure(**bad)
    assert os.environ["UNSLOTH_MULTIIMAGE_VIDEO"] == "frames"


def test_a_batchs_videos_decode_on_the_pool_like_in_a_loop(clip, tmp_path):
    other = videokit.write(tmp_path, "other", row=1)
    rows = [row_with({"type": "video", "video": clip}), row_with(), row_with({"type": "video", "video": other})]
    pooled = prepare_batch(rows, Settings(video="frames", decode_threads=3))
    serial = prepare_batch(rows, Settings(video="frames", decode_threads=1))
    assert [[videokit.code_of(i) for i in p.plan.images] for p in pooled] == [
        [videokit.code_of(i) for i in p.plan.images] for p in serial
    ]
    assert pooled[1].example is rows[1] and [len(p.plan.images) for p in pooled] == [4, 0, 4]
    bad = [rows[0], row_with({"type": "video", "video": b"junk" * 9}), row_with({"type": "video", "video": []})]
    with pytest.raises(VideoLoadError, match="row 1, video 0"):  # the first bad row, as in a loop
        prepare_batch(bad, Settings(video="frames", decode_threads=3))

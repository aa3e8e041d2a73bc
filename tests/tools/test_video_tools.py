"""``doctor --dataset`` and ``preview`` show the frames a video row sends (the same row pipeline as the
collator), and say when a video is left to the family's own video processor (``native``)."""

from __future__ import annotations

import json

import pytest

from unsloth_multiimage.settings import overriding

videokit = pytest.importorskip("tests.support.videokit")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return videokit.write(tmp_path_factory.mktemp("tool_clip"), size=(28, 28))


def video_row(clip: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "what happens"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "it turns green"}]},
        ]
    }


def test_the_dry_run_counts_the_frames_sent_as_images(clip, processor):
    from unsloth_multiimage.tools.dry_run import DryRun

    (report,) = DryRun(processor).check_rows([video_row(clip)])
    assert (report.images, report.sent, report.tokens, report.verdict) == (4, 4, 4, "fixed")
    assert "1 video(s) -> 4 image(s) as frames" in report.note
    with overriding(strategy="grid"):
        (grid,) = DryRun(processor).check_rows([video_row(clip)])
    assert grid.sent == 1 and "storyboard" in grid.note


def test_the_dry_run_says_when_native_has_no_video_path(clip, processor):
    from unsloth_multiimage.tools.dry_run import DryRun

    with overriding(video="native"):
        (report,) = DryRun(processor).check_rows([video_row(clip)])
    assert report.sent == 0 and 'configure(video="frames")' in report.note


def test_a_native_video_family_keeps_its_video_part(clip):
    """Qwen2-VL on a release that hands videos to the processor: ``auto`` leaves the part alone (what
    happens next needs torchvision, which cannot load beside the CPU torch here: unverified)."""
    pytest.importorskip("transformers")
    from tests.support import tiny_vlms
    from unsloth_multiimage.tools.common import native_video
    from unsloth_multiimage.tools.dry_run import DryRun

    try:
        tiny = tiny_vlms.build("qwen2_vl")
    except tiny_vlms.Unavailable as exc:
        pytest.skip(f"qwen2_vl cannot be built offline here: {exc}")
    dry = DryRun(tiny.processor)
    if not native_video(tiny.processor):
        pytest.skip(f"unsloth_zoo {dry.zoo.version} does not hand videos to the processor")
    (report,) = dry.check_rows([video_row(clip)])
    assert report.sent == 0 and "left to the qwen2_vl processor" in report.note
    # the video note alone never makes a row "fixed" (zoo < 2026.9.8 also crashes on image-less rows)
    assert report.verdict == ("fixed" if "upstream" in report.note else "ok")


def test_preview_draws_every_frame(clip, processor, tmp_path):
    from unsloth_multiimage.tools.preview import render_preview

    # labels between the frames: the cumulative mask keeps every frame visible (the latest one refuses the row)
    with overriding(video_frame_label="Frame {n} at {t:.1f} s:", mllama_cross_attention="cumulative"):
        meta = render_preview(video_row(clip), processor, tmp_path / "p.png")
    assert meta["n_images"] == 4 and meta["mask_shape"][2] == 4
    assert "Frame 4 at 1.8 s:" in meta["text"]


def test_doctor_dataset_on_a_llava_video_file(clip, tmp_path):
    """The dataset service converts the LLaVA-Video row; the report shows the frames it sends."""
    from unsloth_multiimage.tools.doctor import check_dataset, format_dataset_check

    data = tmp_path / "videos.jsonl"
    row = {"conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "Green."}]}
    data.write_text(json.dumps({**row, "video": clip}) + "\n")
    check = check_dataset(str(data), limit=None)
    (report,) = check.reports
    assert (report.sent, report.verdict) == (4, "fixed")
    assert "1 video(s) -> 4 image(s) as frames" in format_dataset_check(check)


def test_an_inference_prompt_gets_the_same_frames(clip, processor):
    """``prepare_inputs`` runs the same pipeline: the video's 4 frames fill 4 image slots."""
    from unsloth_multiimage.inference.prompt import prepare_prompt

    messages = [{"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "what"}]}]
    inputs = prepare_prompt(processor, messages).inputs
    assert inputs["pixel_values"].shape[1] == 4
    assert int((inputs["input_ids"][0] == processor.image_token_id).sum()) == 4


def test_doctor_says_what_a_video_becomes_per_family():
    from unsloth_multiimage.collate import release as zoo_release
    from unsloth_multiimage.tools.doctor import doctor_report

    def videos_column(report: str) -> dict:
        section = report[report.index("Model adapters (built in)") :].splitlines()
        return {line.split()[0]: line.split()[-1] for line in section[3:] if line.strip()}

    native = zoo_release.takes_native_video(zoo_release.installed_decision(), _adapter("qwen2_vl"))
    auto = videos_column(doctor_report(import_targets=False))
    assert auto["mllama"] == "frames" and auto["qwen2_vl"] == ("native" if native else "frames")
    with overriding(video="frames"):
        assert set(videos_column(doctor_report(import_targets=False)).values()) == {"frames"}


def _adapter(name: str):
    from unsloth_multiimage.adapters.table import BUILTIN_ADAPTERS

    return next(a for a in BUILTIN_ADAPTERS if a.name == name)

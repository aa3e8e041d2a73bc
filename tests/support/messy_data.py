"""The messy dataset a new user brings (issue 26), built once per session in a temp folder, for the
command tests (fixtures ``messy`` and ``saved_checkpoint``, registered by tests/conftest.py): LLaVA rows with a missing file, 3 tags for 2 images, a corrupt and a
truncated JPEG, an empty conversation, a 1x1 PNG, a 6000x4000 JPEG, unicode names, ids mixing
strings and ints; a file mixing layouts (each way round); a DPO file; a GRPO file; an mp4; an empty
file; a CSV; and a tiny saved checkpoint."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _llava(id_, images, value, answer="yes"):
    return {
        "id": id_,
        "image": images,
        "conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": answer}],
    }


def _images(root: Path) -> None:
    import random

    from PIL import Image

    imgs = root / "imgs"
    imgs.mkdir()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(imgs / "kitchen_1.jpg")
    Image.new("RGB", (40, 30), (20, 200, 20)).save(imgs / "kitchen_2.jpg")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(imgs / "tiny.png")
    Image.new("RGB", (6000, 4000), (120, 120, 120)).save(imgs / "huge.jpg", quality=30)
    Image.new("RGB", (40, 30), (20, 20, 200)).save(imgs / "ça_été.jpg")
    (imgs / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    rng = random.Random(0)  # a noisy image: its JPEG data is long, so a cut leaves the header whole
    noisy = Image.frombytes("RGB", (96, 96), bytes(rng.randrange(256) for _ in range(96 * 96 * 3)))
    noisy.save(imgs / "full.jpg", quality=95)
    data = (imgs / "full.jpg").read_bytes()
    (imgs / "trunc.jpg").write_bytes(data[: len(data) // 2])


def _video(root: Path) -> str | None:
    try:
        import av
        import numpy as np
    except ImportError:
        return None
    path = root / "clip.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=4)
    stream.width = stream.height = 32
    stream.pix_fmt = "yuv420p"
    for i in range(8):
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 30, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return "clip.mp4"


def _messages(images: list[str], text: str = "same colour ?", answer: str = "yes") -> dict:
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": images,
    }


@pytest.fixture(scope="session")
def messy(tmp_path_factory) -> types.SimpleNamespace:
    """Paths of the messy data (see the module docstring); every relative path in the files is
    relative to the folder holding them (``root``)."""
    pytest.importorskip("PIL")
    root = tmp_path_factory.mktemp("messy")
    _images(root)
    llava = [
        _llava("a", ["imgs/kitchen_1.jpg", "imgs/kitchen_2.jpg"], "<image>\n<image>\nsame colour?"),
        _llava(1, ["imgs/missing.jpg"], "<image>\nwhat?"),
        _llava("c", ["imgs/kitchen_1.jpg", "imgs/kitchen_2.jpg"], "<image><image><image> three tags"),
        _llava(3, ["imgs/corrupt.jpg"], "<image> corrupt"),
        _llava("e", ["imgs/trunc.jpg"], "<image> truncated"),
        {"id": "f", "image": [], "conversations": []},
        _llava(6, ["imgs/tiny.png"], "<image> tiny"),
        _llava("h", ["imgs/huge.jpg"], "<image> huge"),
        _llava("i", ["imgs/ça_été.jpg"], "<image> unicode ünï"),
        _llava(9, ["imgs/kitchen_1.jpg"], "<image> ok"),
    ]
    good_messages = _messages(["imgs/kitchen_1.jpg", "imgs/kitchen_2.jpg"])
    clip = _video(root)
    video = (
        {
            "messages": [
                {"role": "user", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "what?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "grey"}]},
            ]
        }
        if clip
        else None
    )
    dpo = {
        "prompt": "<image>\n<image>\nwhich is red?",
        "chosen": "the first",
        "rejected": "the second",
        "images": ["imgs/kitchen_1.jpg", "imgs/kitchen_2.jpg"],
    }
    grpo = {"prompt": "<image> which colour?", "images": ["imgs/kitchen_1.jpg"], "solution": "red"}
    ns = types.SimpleNamespace(
        root=root,
        imgs=root / "imgs",
        llava=_jsonl(root / "llava.jsonl", llava),
        mixed=_jsonl(root / "mixed.jsonl", [llava[0], good_messages]),
        mixed_messages_first=_jsonl(root / "mixed2.jsonl", [good_messages, llava[0]]),
        dpo=_jsonl(root / "dpo.jsonl", [dpo, {**dpo, "chosen": "the second", "rejected": "the first"}]),
        grpo=_jsonl(root / "grpo.jsonl", [grpo]),
        good=_jsonl(root / "good.jsonl", [good_messages, _messages(["imgs/kitchen_2.jpg"], "colour ?", "green")]),
        empty=_jsonl(root / "empty.jsonl", []),
        video=_jsonl(root / "video.jsonl", [video]) if video else None,
        csv=root / "rows.csv",
        ckpt=None,
    )
    ns.csv.write_text("id,image\n1,imgs/kitchen_1.jpg\n", encoding="utf-8")
    return ns


@pytest.fixture(scope="session")
def saved_checkpoint(tmp_path_factory) -> Path:
    """The tiny Llama 3.2 Vision model and processor saved as a local checkpoint folder."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from unsloth_multiimage import tiny_mllama

    folder = tmp_path_factory.mktemp("checkpoint")
    processor = tiny_mllama.build_processor()
    tiny_mllama.build_model(processor, seed=0).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder

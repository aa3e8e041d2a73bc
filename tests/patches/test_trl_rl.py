"""TRL's GRPO and DPO trainers on the tiny Llama 3.2 Vision (Mllama), on CPU, with 1-3 images per prompt.

The REAL trainers (transformers generation, no vLLM) and the REAL model: a forward pre-hook on the
model records what every forward receives (generation, the old-policy log-probs, the loss), and the
coded images (tests/tiles.py) are read back from ``pixel_values``, so each test proves that every
image of every prompt reached the model, and that the cross-attention mask covers the completion.
Without the patches the first step fails as reported (trl_grpo_* and trl_dpo_collator, see
unsloth_multiimage/patches/trl_vision_inputs.py).

TRL 1.15+ scores log-probs with a Triton kernel (``trl/kernels/chunked_logprob.py``) and has no
fallback: on CPU it runs with ``triton`` installed and ``TRITON_INTERPRET=1`` (Triton's interpreter;
nox sets it). Without triton the module is skipped, saying so.
"""

from __future__ import annotations

import os

import pytest

from helpers import patches_off, real_triton

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from packaging.version import Version  # noqa: E402

TRL = Version(trl.__version__)
if TRL < Version("0.24.0"):
    pytest.skip(
        f"GRPOTrainer takes image lists since trl 0.24; trl {trl.__version__} is 'unsupported' in the compat table",
        allow_module_level=True,
    )
if TRL >= Version("1.15.0"):
    from trl.trainer import utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is None:
        pytest.skip(
            f"trl {trl.__version__} scores log-probs with a Triton kernel only: install triton and set "
            f"TRITON_INTERPRET=1 to run GRPO/DPO on CPU",
            allow_module_level=True,
        )
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET=1 is not set: TRL's Triton kernel cannot run on CPU", allow_module_level=True)

#: The DPO patch targets DataCollatorForVisionPreference, proven on trl 1.15+ (absent in 0.24).
dpo_supported = pytest.mark.skipif(
    TRL < Version("1.15.0"), reason=f"the DPO patch supports trl >= 1.15.0, not {trl.__version__}"
)
#: The other families are run where the patches were written (each costs a model and a step).
newest_trl_only = pytest.mark.skipif(TRL < Version("1.15.0"), reason="other families run on trl 1.15+ only")

from tiles import decode_tile, make_tile_image  # noqa: E402

IMAGES_PER_PROMPT = (1, 2, 3)


@pytest.fixture(scope="module", autouse=True)
def _real_triton():
    """TRL's Triton kernel needs the real triton, not the stub an earlier unsloth_zoo import left."""
    with real_triton():
        yield


@pytest.fixture(scope="module")
def mllama(tmp_path_factory):
    """The tiny processor and one model for the module (each trainer gets the same weights back)."""
    from unsloth_multiimage.demo import tiny_mllama

    processor = tiny_mllama.build_processor()
    model = tiny_mllama.build_model(processor, seed=0)
    os.environ.setdefault("UMI_RL_OUT", str(tmp_path_factory.mktemp("rl")))
    return processor, model, {k: v.clone() for k, v in model.state_dict().items()}


class Recorder:
    """Every forward of the model: the images it saw (decoded) and the mask/ids shapes."""

    def __init__(self, model, processor):
        self.processor = processor
        self.calls: list[dict] = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        pv, ids = kwargs.get("pixel_values"), kwargs.get("input_ids")
        if pv is None or ids is None:
            return None
        ar = kwargs.get("aspect_ratio_ids")
        seen = set()
        if ar is not None:
            for r in range(ar.shape[0]):
                for s in range(ar.shape[1]):
                    if int(ar[r, s]) > 0:
                        seen.add(decode_tile(pv[r, s, 0], self.processor))
        cam = kwargs.get("cross_attention_mask")
        self.calls.append(
            {
                "seen": seen,
                "ids": tuple(ids.shape),
                "cam": None if cam is None else tuple(cam.shape),
                "cam_tensor": cam,
                "attention": kwargs.get("attention_mask"),
                "aspect_ratio_ids": ar,
                # trl 1.15+ scores with labels (its fused head); 0.24 - 0.29 without the cache
                "scoring": "labels" in kwargs or kwargs.get("use_cache") is False,
            }
        )
        return None

    def close(self):
        self.handle.remove()


def _prompt(n: int) -> list:
    return [{"role": "user", "content": [*({"type": "image"} for _ in range(n)), {"type": "text", "text": "describe"}]}]


def _assert_every_image_and_mask(calls, expected):
    scoring = [c for c in calls if c["scoring"]]
    assert scoring, "no log-prob / loss forward ran"
    seen = set().union(*(c["seen"] for c in scoring))
    assert seen == expected, f"images reaching the scoring forwards: {sorted(seen)}, expected {sorted(expected)}"
    for call in scoring:
        assert call["cam"] is not None and call["cam"][:2] == call["ids"], call
        # Every real token after the prompt sees every image of its row (one group of images per prompt).
        cam, attention, ar = call["cam_tensor"], call["attention"], call["aspect_ratio_ids"]
        for r in range(cam.shape[0]):
            last = int(attention[r].nonzero().max())
            slots = int((ar[r] > 0).sum())
            assert bool(cam[r, last, :slots, 0].all()), f"row {r}: the last token does not see its {slots} images"


def _grpo(processor, model, rows, **overrides):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def reward(completions, **kwargs):
        return [float(len(str(c))) for c in completions]

    settings = dict(
        output_dir=os.environ["UMI_RL_OUT"],
        per_device_train_batch_size=2 * len(rows),
        num_generations=2,
        max_completion_length=3,
        max_steps=1,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        bf16=False,
        seed=0,
    )
    settings.update(overrides)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=GRPOConfig(**settings),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )
    trainer.train()
    return trainer


def _grpo_rows():
    return [
        {"prompt": _prompt(n), "images": [make_tile_image(r, i) for i in range(n)]}
        for r, n in enumerate(IMAGES_PER_PROMPT)
    ]


def test_grpo_steps_with_one_to_three_images_per_prompt(mllama):
    processor, model, weights = mllama
    model.load_state_dict(weights)
    rows = _grpo_rows()
    expected = {(r, i) for r, n in enumerate(IMAGES_PER_PROMPT) for i in range(n)}
    before = {k: v.clone() for k, v in model.named_parameters() if "vision_model" in k}
    recorder = Recorder(model, processor)
    try:
        # num_iterations=2: the old-policy log-prob pass inside the rollout runs too, and the second
        # step reuses the buffered rollout (the carried inputs survive TRL's shuffle and split).
        _grpo(processor, model, rows, num_iterations=2, max_steps=2, learning_rate=1e-2)
    finally:
        recorder.close()
    generation = [c for c in recorder.calls if not c["scoring"]]
    assert generation and set().union(*(c["seen"] for c in generation)) == expected
    _assert_every_image_and_mask(recorder.calls, expected)
    assert sum(c["scoring"] for c in recorder.calls) >= 3  # old log-probs + two loss forwards
    changed = [k for k, v in model.named_parameters() if k in before and not torch.equal(v, before[k])]
    assert changed, "no vision parameter was trained"


def test_grpo_without_the_patches_fails_as_reported(mllama):
    processor, model, weights = mllama
    model.load_state_dict(weights)
    with patches_off(), pytest.raises(ValueError, match="aspect_ratio_ids` must be provided"):
        _grpo(processor, model, _grpo_rows()[:2])


def _dpo_rows():
    return [
        {
            "prompt": _prompt(n),
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "a red square"}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "no"}]}],
            "images": [make_tile_image(r, i) for i in range(n)],
        }
        for r, n in enumerate(IMAGES_PER_PROMPT)
    ]


def _dpo(processor, model, rows):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from unsloth_multiimage.demo import tiny_mllama

    args = DPOConfig(
        output_dir=os.environ["UMI_RL_OUT"],
        per_device_train_batch_size=len(rows),
        max_steps=1,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        bf16=False,
        seed=0,
    )
    # An explicit reference model: TRL would load one from the model's (empty) name.
    reference = tiny_mllama.build_model(processor, seed=0)
    trainer = DPOTrainer(
        model=model, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor
    )
    trainer.train()
    return trainer


@dpo_supported
def test_dpo_steps_with_one_to_three_images_per_prompt(mllama):
    processor, model, weights = mllama
    model.load_state_dict(weights)
    expected = {(r, i) for r, n in enumerate(IMAGES_PER_PROMPT) for i in range(n)}
    recorder = Recorder(model, processor)
    try:
        _dpo(processor, model, _dpo_rows())
    finally:
        recorder.close()
    _assert_every_image_and_mask(recorder.calls, expected)


@dpo_supported
def test_dpo_without_the_patches_fails_as_reported(mllama):
    processor, model, weights = mllama
    model.load_state_dict(weights)
    # trl 1.15: "index 12 is out of bounds for dimension 0 with size 12"; 1.16: a size mismatch in attention.
    with patches_off(), pytest.raises((IndexError, RuntimeError), match="out of bounds|must match the size"):
        _dpo(processor, model, _dpo_rows()[:2])


# Families TRL drives by itself (their adapters name no extra inputs, so the patches leave them alone):
# GRPO steps with 1-3 images per prompt, every image read back from the scoring forwards. Not here:
# Qwen2-VL / Qwen3-VL (trl 1.15 + the tiny models fail in get_rope_index: "shape mismatch: value tensor
# of shape [3, 24] cannot be broadcast to indexing result of shape [3, 21]") and Pixtral (TRL tokenizes
# the prompts unpadded, which PixtralProcessor cannot return as tensors).
TRL_DRIVEN = ("gemma3", "idefics3", "llava", "llava_next", "internvl")


@newest_trl_only
@pytest.mark.parametrize("family", TRL_DRIVEN)
def test_grpo_steps_on_the_families_trl_drives(family, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    import tiny_vlms

    try:
        tiny = tiny_vlms.build(family)
    except tiny_vlms.Unavailable as exc:
        pytest.skip(str(exc))
    model = tiny.make_model()
    seen: list = []

    def hook(module, args, kwargs):
        if kwargs.get(tiny.pixel_key) is not None and "labels" in kwargs:
            seen.extend(tiny.decode(kwargs))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    rows = [
        {"prompt": _prompt(n), "images": [tiny_vlms.make_tile_image(r, i, tiny.image_size) for i in range(n)]}
        for r, n in enumerate(IMAGES_PER_PROMPT)
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2 * len(rows),
        num_generations=2,
        max_completion_length=3,
        max_steps=1,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        bf16=False,
        seed=0,
    )
    GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [float(len(str(c))) for c in completions],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny.processor,
    ).train()
    assert set(seen) == {(r, i) for r, n in enumerate(IMAGES_PER_PROMPT) for i in range(n)}

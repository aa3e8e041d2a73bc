"""TRL's GRPO and DPO trainers on the tiny Llama 3.2 Vision (Mllama), on CPU, with 1-3 images per prompt.

The REAL trainers (transformers generation, no vLLM) and the REAL model: a forward pre-hook on the
model records what every forward receives (generation, the old-policy log-probs, the loss), and the
coded images (tests/support/tiles.py) are read back from ``pixel_values``, so each test proves that every
image of every prompt reached the model, and that the cross-attention mask covers the completion.
Without the patches the first step fails as reported (trl_grpo_* and trl_dpo_collator, see
unsloth_multiimage/patches/trl_vision_inputs.py, the work in unsloth_multiimage/collate/trl_inputs.py).

TRL 1.15+ scores log-probs with a Triton kernel (``trl/kernels/chunked_logprob.py``) and has no
fallback: on CPU it runs with ``triton`` installed and ``TRITON_INTERPRET=1`` (Triton's interpreter;
nox sets it). Without triton the module is skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.support import patches_off, real_triton

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from tests.support.facts import fix_needed, supported  # noqa: E402

if not supported("trl_grpo_rollout"):
    pytest.skip(
        f"GRPOTrainer takes image lists from the trl_grpo_rollout patch's supported releases on; trl "
        f"{trl.__version__} is 'unsupported' in the compat table",
        allow_module_level=True,
    )
if importlib.util.find_spec("trl.kernels") is not None:  # TRL's Triton log-prob kernel
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
    not supported("trl_dpo_collator"), reason=f"trl {trl.__version__} is outside the DPO patch's supported range"
)
#: The negative controls run on the default row only; every other row runs the Mllama cases (cost: each
#: case is a model and a GRPO step).
DEFAULT_ROW = "tf5.17-zoo2026.10"
FULL = os.environ.get("UMI_COMPAT_ROW", DEFAULT_ROW) in ("", DEFAULT_ROW)
default_row_only = pytest.mark.skipif(not FULL, reason=f"run on the default row {DEFAULT_ROW} only (CI cost)")
#: The other families run where TRL takes them all (the rows of the newest TRL releases).
newest_trl_only = pytest.mark.skipif(
    not supported("trl_dpo_collator"), reason="other families run where every TRL patch is supported (CI cost)"
)

from tests.support.tiles import decode_tile, make_tile_image  # noqa: E402

IMAGES_PER_PROMPT = (1, 2, 3)


@pytest.fixture(scope="module", autouse=True)
def _real_triton():
    """TRL's Triton kernel needs the real triton, not the stub an earlier unsloth_zoo import left."""
    with real_triton():
        yield


@pytest.fixture(scope="module")
def mllama(tmp_path_factory):
    """The tiny processor and one model for the module (each trainer gets the same weights back)."""
    from unsloth_multiimage import tiny_mllama

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


def grpo_trainer(processor, model, rows, output_dir, **overrides):
    """The real ``GRPOTrainer`` on CPU over ``rows`` (one step's batch: every row, 2 generations each,
    completions of 3 tokens, rewarded by their length); ``overrides`` are ``GRPOConfig`` settings."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def reward(completions, **kwargs):
        return [float(len(str(c))) for c in completions]

    settings = dict(
        output_dir=str(output_dir),
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
    return GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=GRPOConfig(**settings),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )


def _grpo(processor, model, rows, **overrides):
    trainer = grpo_trainer(processor, model, rows, os.environ["UMI_RL_OUT"], **overrides)
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

    from unsloth_multiimage import tiny_mllama

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


# ------------------------------------------------------------------ left-padded generation
# TRL 0.29+ tokenizes the prompts unpadded and left-pads them for ``generate``; the cross-attention
# mask must move with each row's tokens. Prompts of different lengths and image counts in one batch:
# each row's greedy completion and TRL's log-probs for it must equal that prompt run alone.
LEFT_PAD_PROMPTS = ((1, "describe"), (3, "what is in these three pictures, in a few words"), (2, "hi"))


def _cross_attention_decides(model) -> None:
    """Scale the text side's cross-attention so that what a token sees decides the greedy tokens (the
    tiny model's images otherwise move its logits by ~0.01, too little to change an argmax)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("cross_attn.o_proj.weight"):
                param.mul_(20.0)
            elif name.endswith("cross_attn_attn_gate"):
                param.fill_(3.0)


def _alone(trainer, processor, model, rows):
    """For each row: its prompt ids, greedy completion and per-token log-probs, run by itself through
    ``generate`` (no text padding) with the trainer's generation config.

    The row is cut out of the processor's own batch encoding of every prompt (its pad tokens dropped), so
    it keeps the batch's image slots: Mllama's forward does not ignore empty slots (the tokens before the
    first ``<|image|>`` attend to every slot of the row, transformers#39379), so only a row with the
    batch's image count could be compared with a batch of one."""
    texts = [processor.apply_chat_template(row["prompt"], add_generation_prompt=True) for row in rows]
    batch = processor(
        images=[row["images"] for row in rows], text=texts, padding=True, add_special_tokens=False, return_tensors="pt"
    )
    alone = {}
    # An earlier trainer leaves the model training with gradient checkpointing on, which turns the KV
    # cache off in its forward (a different generation path from the one TRL's rollout runs): eval mode.
    was_training = model.training
    model.eval()
    try:
        for r in range(len(rows)):
            alone.update(_generate_alone(trainer, model, batch, r))
    finally:
        model.train(was_training)
    return alone


def _generate_alone(trainer, model, batch, r):
    """Row ``r`` of the processor's ``batch`` generated by itself: ``{prompt ids: (completion, log-probs)}``."""
    real = batch["attention_mask"][r].bool()
    one = {k: v[r : r + 1] for k, v in batch.items()}
    for key in ("input_ids", "attention_mask", "cross_attention_mask"):
        one[key] = one[key][:, real]
    with torch.no_grad():
        out = model.generate(
            **one, generation_config=trainer.generation_config, output_logits=True, return_dict_in_generate=True
        )
    prompt = one["input_ids"][0].tolist()
    completion = out.sequences[0, len(prompt) :]
    logps = torch.stack(out.logits, dim=1)[0].float().log_softmax(-1)
    return {tuple(prompt): (completion.tolist(), logps.gather(-1, completion[:, None])[:, 0])}


def _left_pad_rollout(processor, model, output_dir):
    """One greedy GRPO rollout over LEFT_PAD_PROMPTS. Returns the references computed alone first, the
    batch ``generate`` TRL ran (its rows and per-step logits, recorded around the real ``generate``) and
    the rollout TRL returned (``num_iterations=2``: it holds TRL's old-policy log-probs)."""
    rows = [
        {"prompt": _prompt_text(n, text), "images": [make_tile_image(r, i) for i in range(n)]}
        for r, (n, text) in enumerate(LEFT_PAD_PROMPTS)
    ]
    trainer = grpo_trainer(
        processor,
        model,
        rows,
        output_dir,
        num_iterations=2,
        max_completion_length=4,
        learning_rate=0.0,
        generation_kwargs={"do_sample": False},
    )
    alone = _alone(trainer, processor, model, rows)
    generated, captured = [], []
    generate, rollout = model.generate, trainer._generate_and_score_completions

    def recording_generate(*args, **kwargs):
        out = generate(*args, **kwargs, output_logits=True, return_dict_in_generate=True)
        generated.append((kwargs["input_ids"], kwargs["attention_mask"], out.sequences, torch.stack(out.logits, 1)))
        return out.sequences

    def capture(inputs):
        captured.append(rollout(inputs))
        return captured[-1]

    model.generate = recording_generate
    trainer._generate_and_score_completions = capture
    try:
        trainer.train()
    finally:
        del model.generate
    ((ids, attention, sequences, logits),) = generated
    batch = []
    for r in range(ids.shape[0]):
        completion = sequences[r, ids.shape[1] :]
        logps = logits[r].float().log_softmax(-1).gather(-1, completion[:, None])[:, 0]
        batch.append((ids[r][attention[r].bool()].tolist(), completion.tolist(), logps))
    return alone, batch, captured[0]


def _rows_of(rollout):
    """Each rollout row as (real prompt ids, real completion ids, TRL's log-probs of the completion)."""
    for r in range(rollout["prompt_ids"].shape[0]):
        prompt = rollout["prompt_ids"][r][rollout["prompt_mask"][r].bool()].tolist()
        real = rollout["completion_mask"][r].bool()
        yield prompt, rollout["completion_ids"][r][real].tolist(), rollout["old_per_token_logps"][r][real]


def _prompt_text(n: int, text: str) -> list:
    return [{"role": "user", "content": [*({"type": "image"} for _ in range(n)), {"type": "text", "text": text}]}]


def test_grpo_batch_of_left_padded_prompts_equals_each_prompt_alone(mllama, tmp_path):
    processor, model, weights = mllama
    model.load_state_dict(weights)
    _cross_attention_decides(model)
    alone, batch, rollout = _left_pad_rollout(processor, model, tmp_path)
    assert len({len(p) for p in alone}) == len(LEFT_PAD_PROMPTS), "the prompts must differ in length"
    # generate: every row's greedy tokens and their log-probs, step by step, as alone
    assert {tuple(prompt) for prompt, _, _ in batch} == set(alone)
    for prompt, completion, logps in batch:
        expected, expected_logps = alone[tuple(prompt)]
        n = len(expected)  # alone stops at EOS; the batch runs on for its other rows
        assert completion[:n] == expected, f"prompt of {len(prompt)} tokens: batch {completion}, alone {expected}"
        torch.testing.assert_close(logps[:n], expected_logps, atol=1e-4, rtol=1e-4)
    # TRL's own log-probs of the completions (the old-policy pass, with the carried vision inputs)
    for prompt, completion, logps in _rows_of(rollout):
        expected, expected_logps = alone[tuple(prompt)]
        assert completion == expected[: len(completion)]
        torch.testing.assert_close(logps, expected_logps[: len(logps)], atol=1e-4, rtol=1e-4)


@default_row_only
@pytest.mark.skipif(
    not fix_needed("trl_grpo_rollout", "left_padded_generation"),
    reason="this trl lets the processor left-pad (left_padded_generation not needed)",
)
def test_left_padded_generation_without_the_fix_differs(mllama, tmp_path, monkeypatch):
    """The negative control: with only the generation re-layout off, a shorter prompt's tokens see the
    wrong images in the batch, and its generation log-probs are not what they are alone."""
    from unsloth_multiimage.collate import trl_inputs

    processor, model, weights = mllama
    model.load_state_dict(weights)
    _cross_attention_decides(model)
    monkeypatch.setattr(trl_inputs, "_generation_override", lambda *args, **kwargs: None)
    alone, batch, _ = _left_pad_rollout(processor, model, tmp_path)
    worst = max(float((logps[:1] - alone[tuple(prompt)][1][:1]).abs().max()) for prompt, _, logps in batch)
    assert worst > 1e-2, f"the first generated token's log-prob moved by {worst} only without the fix"


# Families TRL drives (their adapters name no vision inputs TRL drops; Qwen's name its token types):
# GRPO steps with 1-3 images per prompt, every image read back from the scoring forwards. Qwen2-VL /
# Qwen3-VL need their mm_token_type_ids laid over the left-padded ids (without it: "shape mismatch: value
# tensor of shape [3, 24] cannot be broadcast to indexing result of shape [3, 21]" in get_rope_index, a
# right-padding processor). Not here: Pixtral (TRL tokenizes the prompts unpadded, which
# PixtralProcessor cannot return as tensors).
TRL_DRIVEN = ("gemma3", "idefics3", "llava", "llava_next", "internvl", "qwen2_vl", "qwen3_vl")


@newest_trl_only
@pytest.mark.parametrize("family", TRL_DRIVEN)
def test_grpo_steps_on_the_families_trl_drives(family, tmp_path):
    from tests.support import tiny_vlms

    try:
        tiny = tiny_vlms.build(family)
    except tiny_vlms.Unavailable as exc:
        pytest.skip(str(exc))
    model = tiny.make_model()
    seen: list = []
    typed: list = []

    def hook(module, args, kwargs):
        if kwargs.get(tiny.pixel_key) is not None and "labels" in kwargs:
            seen.extend(tiny.decode(kwargs))
        typed.extend(_token_types_follow_the_image_tokens(kwargs))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    rows = [
        {"prompt": _prompt(n), "images": [tiny_vlms.make_tile_image(r, i, tiny.image_size) for i in range(n)]}
        for r, n in enumerate(IMAGES_PER_PROMPT)
    ]
    grpo_trainer(tiny.processor, model, rows, tmp_path).train()
    assert set(seen) == {(r, i) for r, n in enumerate(IMAGES_PER_PROMPT) for i in range(n)}
    if family in TYPED:
        assert typed, f"no forward of {family} received its per-token type ids"


#: Families whose forward takes per-token image types (Qwen's M-RoPE places each image by them, Gemma 3's
#: image tokens attend to each other by them).
TYPED = ("gemma3", "qwen2_vl", "qwen3_vl")


def _token_types_follow_the_image_tokens(kwargs):
    """For a forward given per-token type ids: on the real tokens, type 1 marks one token id, and
    every occurrence of it (the prompts mix lengths, so types laid out for another padding side would
    mark text and padding, and miss image tokens)."""
    ids, attention = kwargs.get("input_ids"), kwargs.get("attention_mask")
    for key in ("mm_token_type_ids", "token_type_ids"):
        types = kwargs.get(key)
        if types is None or ids is None or attention is None or not types.shape == ids.shape == attention.shape:
            continue
        real = attention.bool()
        marked = ids[(types == 1) & real].unique()
        assert len(marked) == 1, f"{key} marks tokens {marked.tolist()} as image tokens"
        mismatch = ((types == 1) != (ids == marked[0])) & real
        assert not bool(mismatch.any()), f"{key} misses image tokens in rows {mismatch.any(1).tolist()}"
        yield key

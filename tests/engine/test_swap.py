"""``engine.swap.swapped``: every temporary replacement the patches make puts back exactly what was
there, and is safe when several threads run the patched code at once."""

from __future__ import annotations

import threading
import time
import types

import pytest

from unsloth_multiimage.engine.swap import swapped


class _Plain:
    inherited = "from the class"

    def method(self):
        return "the class's method"


class _Slotted:
    __slots__ = ("processor", "formatting_func")


def test_an_own_attribute_comes_back_identical_and_a_shadow_is_deleted():
    obj = _Plain()
    original = object()
    obj.own = original
    with swapped(obj, own="new", inherited="shadow", method=lambda: "shadow"):
        assert (obj.own, obj.inherited, obj.method()) == ("new", "shadow", "shadow")
    assert obj.own is original
    assert "inherited" not in vars(obj) and obj.inherited == "from the class"
    assert "method" not in vars(obj) and obj.method() == "the class's method"


def test_slots_modules_and_an_exception_inside_the_block():
    slotted = _Slotted()
    processor = object()
    slotted.processor = processor  # formatting_func left unset
    module = types.ModuleType("fake_vllm")
    llm = object()
    module.LLM = llm
    with (
        pytest.raises(KeyError),
        swapped(slotted, processor="proxy", formatting_func=None),
        swapped(module, LLM="shim"),
    ):
        assert (slotted.processor, slotted.formatting_func, module.LLM) == ("proxy", None, "shim")
        raise KeyError("inside")
    assert slotted.processor is processor and module.LLM is llm
    assert not hasattr(slotted, "formatting_func")


def test_nested_swaps_of_one_attribute_unwind_in_order():
    obj = _Plain()
    obj.value = 0
    with swapped(obj, value=1):
        with swapped(obj, value=2):
            assert obj.value == 2
        assert obj.value == 1
    assert obj.value == 0


def test_threads_never_see_each_others_replacement():
    """Eight threads swap the same attribute and read it back after a pause: each sees its own value
    throughout (the lock), and the original is back at the end."""
    obj = _Plain()
    obj.processor = "original"
    seen: list[tuple[int, str]] = []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        start.wait()
        for _ in range(20):
            with swapped(obj, processor=f"thread {k}"):
                time.sleep(0.0005)
                seen.append((k, obj.processor))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 160
    assert all(value == f"thread {k}" for k, value in seen)
    assert obj.processor == "original"


def test_the_patched_collator_called_from_threads_builds_each_batch_as_alone(tiny, processor, zoo_collator):
    """The real collator, patched, called by four threads at once on different batches: each batch is
    the one a single call builds, and the collator's processor is the very original afterwards."""
    batches = [
        [
            {
                "messages": [
                    {"role": "user", "content": [*[{"type": "image"}] * n, {"type": "text", "text": "describe"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "the first"}]},
                ],
                "images": [tiny.make_tile_image(b * 4 + r, k) for k in range(n)],
            }
            for r, n in enumerate(counts)
        ]
        for b, counts in enumerate([(2, 0, 3), (1, 1), (0, 3, 2, 1), (3,)])
    ]
    alone = [zoo_collator(rows) for rows in batches]
    original = zoo_collator.processor
    results: dict[int, object] = {}
    start = threading.Barrier(len(batches))

    def work(b: int) -> None:
        start.wait()
        results[b] = zoo_collator(batches[b])

    threads = [threading.Thread(target=work, args=(b,)) for b in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert zoo_collator.processor is original
    for b, want in enumerate(alone):
        got = results[b]
        assert set(got.keys()) == set(want.keys())
        for key in want:
            assert got[key].shape == want[key].shape and (got[key] == want[key]).all(), (b, key)

"""``doctor --dataset``'s dry run says what the patched collator of the installed release does.

The property runs generated rows (every layout, bad entries included: tests/support/rowgen.py) through
the dry run and through the REAL collator, the row beside a plain one-image row, and asserts:

- the collator raises on the row exactly when the dry run says ``error``, with the same message;
- otherwise the dry run's image count is what reaches the model, and its verdict is true of the
  release: ``ok`` means the release alone (plugin off) collates the batch with the same images
  in the same slots and the same tokens, ``fixed`` means it fails or gets the batch wrong.
"""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import UNSLOTH_ZOO, patches_off
from tests.support.rowgen import build_row, companion, row_specs, slot_codes

pytestmark = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")

AGREEMENT = settings(
    max_examples=int(os.environ.get("UMI_DRY_RUN_EXAMPLES", "500")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("umi_dry_run_images")


@pytest.fixture(scope="module")
def dry_run(processor):
    from unsloth_multiimage.tools.dry_run import DryRun

    return DryRun(processor)


def _collate(collator, batch):
    try:
        return collator(copy.deepcopy(batch)), None
    except Exception as exc:  # noqa: BLE001 - every outcome is compared
        return None, exc


@AGREEMENT
@given(spec=row_specs())
def test_the_dry_run_says_what_the_collator_does(spec, tiny, processor, zoo_collator, dry_run, image_dir):
    example, n = build_row(spec, 0, image_dir)
    batch = [example, companion(spec["layout"], 1, image_dir)]
    report = dry_run.check(copy.deepcopy(example), 0)
    out, error = _collate(zoo_collator, batch)
    if error is not None:
        assert isinstance(error, ValueError), f"not a ValueError: {error!r}"
        assert report.verdict == "error", f"the dry run says {report.verdict} ({report.note}); the collator: {error}"
        assert report.note == getattr(error, "message", str(error))  # training also says where the row is
        return
    assert report.verdict != "error", f"the dry run says error ({report.note}); the collator collates"
    assert report.sent == n
    codes = slot_codes(tiny, processor, out)
    assert codes[0] == [(0, k) for k in range(n)]
    with patches_off():
        upstream, up_error = _collate(zoo_collator, batch)
    same = (
        upstream is not None
        and slot_codes(tiny, processor, upstream) == codes
        and upstream["input_ids"].tolist() == out["input_ids"].tolist()
    )
    if report.verdict == "ok":
        assert same, f"the dry run says ok, but without the plugin: {up_error!r}"
    else:
        assert not same, f"the dry run says fixed ({report.note}), but the release alone collates it the same"


def test_a_tagged_conversations_row_is_named_mantis_even_after_upstream_rewrites_its_contents(
    processor, zoo_collator, dry_run, image_dir
):
    """Found by the property above on unsloth_zoo 2026.9.7, which turns a row's string contents into
    text parts in place: the collator then named the layout of the rewritten row (LLaMA-Factory);
    the dry run and the collator must both name the layout the user gave (Mantis)."""
    spec = {
        "kind": "column",
        "layout": "conversations",
        "pairs": 3,
        "turns": [0, 0],
        "filled": [False, False],
        "reprs": ["pil", "pil"],
        "sizes": [(28, 28), (28, 28)],
        "text_first": [False] * 6,
        "string_text": [True, False, False, False, False, False],
        "system": False,
        "arrow_nones": False,
        "images_key": "list",
        "fault": "tag_text",
        "fault_at": 0,
    }
    example, _ = build_row(spec, 0, image_dir)
    report = dry_run.check(copy.deepcopy(example), 0)
    _, error = _collate(zoo_collator, [example, companion(spec["layout"], 1, image_dir)])
    assert error is not None and "image tag(s) of Mantis rows" in str(error), error
    assert report.verdict == "error" and report.note == getattr(error, "message", str(error))

"""Image policies (cap, pixel budget, grid) as pure functions, then through the REAL collator."""

from __future__ import annotations

import copy
import inspect
import logging

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

pytest.importorskip("PIL", reason="Pillow is not installed: the image policies resize and compose PIL images")
from PIL import Image  # noqa: E402

from tests.support import UNSLOTH_ZOO, upstream_pc_failure
from tests.support.facts import does
from unsloth_multiimage import configure, reset_settings
from unsloth_multiimage.errors import ImageCountError
from unsloth_multiimage.rows.chat import content_parts, is_image_part, messages_of
from unsloth_multiimage.rows.decode import MIN_SIDE
from unsloth_multiimage.rows.grid import cell_boxes, compose_grid, grid_layout
from unsloth_multiimage.rows.plan import RowPlan, plan_row
from unsloth_multiimage.rows.policy import apply_policies, budget_sizes, cap_indices
from unsloth_multiimage.rows.serial import needs_serial
from unsloth_multiimage.settings import Settings

IMG = {"type": "image"}
PALETTE = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (128, 64, 0),
    (0, 128, 64),
    (64, 0, 128),
]


def solid(colour, size=(8, 8)):
    return Image.new("RGB", size, colour)


def pics(n, size=(8, 8)):
    return [solid(PALETTE[i % len(PALETTE)], size) for i in range(n)]


def user(*parts, text="compare"):
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def assistant(text="the first", *parts):
    return {"role": "assistant", "content": [{"type": "text", "text": text}, *parts]}


def carry(img):
    return {"type": "image", "image": img}


def column_row(images):
    return {"messages": [user(*[IMG] * len(images)), assistant()], "images": list(images)}


def embedded_row(images):
    """Images carried by the parts, spread over two user turns (multi-turn)."""
    half = len(images) // 2
    return {
        "messages": [
            user(*[carry(i) for i in images[:half]]),
            assistant(),
            user(*[carry(i) for i in images[half:]], text="and these?"),
            assistant("the second"),
        ]
    }


def merged_row(images, bare):
    """Bare placeholders (column images) interleaved with parts that carry their image."""
    parts = [IMG if b else carry(img) for img, b in zip(images, bare)]
    return {"messages": [user(*parts), assistant()], "images": [img for img, b in zip(images, bare) if b]}


def pc_row(images, column=True):
    """Prompt/completion row; the completion holds the last image."""
    parts = [IMG if column else carry(i) for i in images]
    row = {"prompt": [user(*parts[:-1])], "completion": [assistant("the first", *parts[-1:])]}
    if column:
        row["images"] = list(images)
    return row


def conversations_row(images):
    return {"conversations": [user(*[IMG] * len(images)), assistant()], "images": list(images)}


def list_row(images):
    return [user(*[carry(i) for i in images]), assistant()]


LAYOUTS = {
    "column": column_row,
    "embedded": embedded_row,
    "merged": lambda imgs: merged_row(imgs, [k % 2 == 0 for k in range(len(imgs))]),
    "merged_empty_column": lambda imgs: {**embedded_row(imgs), "images": []},
    "pc_column": pc_row,
    "pc_embedded": lambda imgs: pc_row(imgs, column=False),
    "conversations": conversations_row,
    "list": list_row,
}


def image_parts(example):
    return [p for p in content_parts(messages_of(example)) if is_image_part(p)]


def assert_consistent(example, plan):
    """The plan agrees with the example: one image part per image, and plan_row sees the same row."""
    assert len(image_parts(example)) == len(plan.images) == plan.placeholders
    fresh = plan_row(example, plan.row)
    assert (fresh.column, fresh.merged, fresh.upstream_count, fresh.placeholders) == (
        plan.column,
        plan.merged,
        plan.upstream_count,
        plan.placeholders,
    )
    assert len(fresh.images) == len(plan.images)
    assert all(a is b for a, b in zip(fresh.images, plan.images)), "the example does not carry the plan's images"
    if plan.column:
        assert plan.upstream_count == len(example["images"])


def run(examples, **changes):
    plans = [plan_row(e, i) for i, e in enumerate(examples)]
    return apply_policies(examples, plans, Settings(**changes))


# ---------------------------------------------------------------------------------------------
# defaults


def test_default_settings_return_the_same_objects():
    examples = [column_row(pics(3)), embedded_row(pics(2)), {"messages": [user(), assistant()]}]
    plans = [plan_row(e, i) for i, e in enumerate(examples)]
    out_e, out_p = apply_policies(examples, plans, Settings())
    assert out_e is examples and out_p is plans
    assert all(a is b for a, b in zip(out_e, examples)) and all(a is b for a, b in zip(out_p, plans))


def test_rows_no_policy_touches_keep_their_objects():
    examples = [column_row(pics(2)), embedded_row(pics(1)), column_row(pics(4))]
    out_e, out_p = run(examples, max_images=3, on_excess="keep_first", max_pixels_per_example=10_000)
    assert out_e[0] is examples[0] and out_e[1] is examples[1]
    assert out_e[2] is not examples[2]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 examples but 1 plans"):
        apply_policies([column_row(pics(1))] * 2, [plan_row(column_row(pics(1)), 0)], Settings())


# ---------------------------------------------------------------------------------------------
# cap


def test_cap_error_names_row_count_cap_and_fix():
    examples = [column_row(pics(2)), column_row(pics(5)), embedded_row(pics(4))]
    with pytest.raises(ImageCountError) as err:
        run(examples, max_images=3)
    msg = str(err.value)
    assert "row 1 has 5 images but max_images=3" in msg
    assert "row 2 (4)" in msg
    assert "configure(max_images=5)" in msg and "UNSLOTH_MULTIIMAGE_MAX_IMAGES" in msg
    assert 'on_excess="keep_first"' in msg and 'on_excess="keep_last"' in msg


def test_cap_error_is_the_default_and_applies_at_the_cap_only():
    examples = [column_row(pics(3))]
    out_e, _ = run(examples, max_images=3)
    assert out_e[0] is examples[0]
    with pytest.raises(ImageCountError, match="row 0 has 3 images but max_images=2"):
        run(examples, max_images=2)


@pytest.mark.parametrize("policy", ["keep_first", "keep_last"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_cap_drops_images_with_their_placeholders(layout, policy):
    images = pics(5)
    example = LAYOUTS[layout](images)
    before = copy.deepcopy(example)
    [out], [plan] = run([example], max_images=2, on_excess=policy)
    kept = images[:2] if policy == "keep_first" else images[3:]
    assert list(plan.images) == kept and all(a is b for a, b in zip(plan.images, kept))
    assert_consistent(out, plan)
    assert example == before, "the input example was modified"
    assert out is not example


def test_cap_keeps_the_merged_flag_and_column_count():
    images = pics(5)
    example = merged_row(images, [True, False, True, False, True])  # column: images 0, 2, 4
    [out], [plan] = run([example], max_images=3, on_excess="keep_last")  # keeps 2 (embedded), 3 (col), 4 (col)
    assert plan.images == tuple(images[2:])
    assert plan.merged and plan.column and plan.upstream_count == 2
    assert out["images"] == [images[3], images[4]] or out["images"] == [images[2], images[4]]
    assert_consistent(out, plan)


def test_cap_keeping_only_embedded_images_leaves_an_empty_column():
    images = pics(3)
    example = merged_row(images, [False, True, True])
    [out], [plan] = run([example], max_images=1, on_excess="keep_first")
    assert out["images"] == [] and plan.images == (images[0],)
    assert plan.merged and plan.upstream_count == 0
    assert_consistent(out, plan)


def test_cap_warns_once_naming_rows_and_counts(caplog):
    examples = [column_row(pics(5)), column_row(pics(1)), embedded_row(pics(3)), pc_row(pics(4))]
    with caplog.at_level(logging.WARNING, logger="unsloth_multiimage"):
        run(examples, max_images=2, on_excess="keep_last")
    records = [r for r in caplog.records if r.name == "unsloth_multiimage"]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert "3 row(s)" in msg and "row 0 (5 -> 2)" in msg and "row 2 (3 -> 2)" in msg and "row 3 (4 -> 2)" in msg
    assert "row 1 " not in msg and "dropped the first images" in msg


def test_no_warning_when_nothing_is_dropped(caplog):
    with caplog.at_level(logging.WARNING, logger="unsloth_multiimage"):
        run([column_row(pics(2))], max_images=2, on_excess="keep_first")
    assert not caplog.records


def test_cap_indices():
    assert cap_indices(5, None, "error") == [0, 1, 2, 3, 4]
    assert cap_indices(5, 2, "keep_first") == [0, 1]
    assert cap_indices(5, 2, "keep_last") == [3, 4]
    assert cap_indices(2, 2, "error") == [0, 1]


def test_cap_needs_no_loaded_images():
    # The cap can run before decoding, so dropped images are never loaded.
    example = {
        "messages": [user(IMG, {"type": "image", "path": "b.png"}, IMG), assistant()],
        "images": ["a.png", "c.png"],
    }
    [out], [plan] = run([example], max_images=2, on_excess="keep_last")
    assert plan.images == ("b.png", "c.png") and out["images"] == ["c.png"]
    assert_consistent(out, plan)


def test_cap_on_a_column_row_without_placeholders_is_a_clear_error():
    images = pics(3)
    example = {
        "messages": [{"role": "user", "content": "<|image|><|image|><|image|>compare"}, assistant()],
        "images": images,
    }
    with pytest.raises(ImageCountError, match=r"row 0 has 3 image\(s\) in its `images` column but 0"):
        run([example], max_images=2, on_excess="keep_first")


def test_input_is_not_mutated_by_any_policy():
    examples = [LAYOUTS[name](pics(5, (16, 12))) for name in sorted(LAYOUTS)]
    before = copy.deepcopy(examples)
    run(examples, max_images=3, on_excess="keep_last", max_pixels_per_example=300, strategy="grid", grid_labels=True)
    assert examples == before


# ---------------------------------------------------------------------------------------------
# pixel budget


def test_budget_sizes_math():
    assert budget_sizes([(100, 50), (40, 40)], 10_000) == [(100, 50), (40, 40)]  # 6,600 fits
    # 2 x 560x560 into 313,600 (one 560x560): f = sqrt(1/2)
    assert budget_sizes([(560, 560), (560, 560)], 313_600) == [(395, 395), (395, 395)]
    # exact factors stay exact: 4 x 100x100 into 10,000 -> f = 1/2
    assert budget_sizes([(100, 100)] * 4, 10_000) == [(50, 50)] * 4
    new = budget_sizes([(1000, 100), (3, 7), (640, 480)], 50_000)
    assert sum(w * h for w, h in new) <= 50_000
    assert new[0][0] / new[0][1] == pytest.approx(10, rel=0.05)
    assert budget_sizes([(1000, 1)], 100) == [(316, 1)]  # a side never grows: 1 px stays 1 px
    # no side is shrunk below MIN_SIDE (4 px; smaller sides are misread): the only case above budget
    assert budget_sizes([(4000, 3000), (40, 30)], 200_000) == [(516, 387), (5, 4)]


@pytest.mark.parametrize("layout", ["column", "embedded", "merged", "pc_column", "pc_embedded", "list"])
def test_budget_downsizes_every_image_of_the_row_by_one_factor(layout):
    images = [solid(PALETTE[0], (200, 100)), solid(PALETTE[1], (100, 100)), solid(PALETTE[2], (50, 80))]
    total = 200 * 100 + 100 * 100 + 50 * 80
    example = LAYOUTS[layout](images)
    [out], [plan] = run([example], max_pixels_per_example=total // 4)
    sizes = [img.size for img in plan.images]
    assert sizes == [(100, 50), (50, 50), (25, 40)]
    assert sum(w * h for w, h in sizes) <= total // 4
    assert [img.getpixel((0, 0)) for img in plan.images] == PALETTE[:3]  # order kept
    assert_consistent(out, plan)


def test_budget_leaves_rows_within_budget_alone():
    small, big = column_row(pics(2, (10, 10))), column_row(pics(2, (100, 100)))
    out_e, out_p = run([small, big], max_pixels_per_example=1000)
    assert out_e[0] is small and out_p[0].images == tuple(small["images"])
    assert all(img.size == (22, 22) for img in out_p[1].images)
    assert all(a is b for a, b in zip(out_e[1]["images"], out_p[1].images))


def test_budget_on_a_plain_column_row_without_placeholders():
    example = {"messages": [{"role": "user", "content": "<|image|><|image|>hi"}], "images": pics(2, (100, 100))}
    [out], [plan] = run([example], max_pixels_per_example=5000)
    assert [img.size for img in out["images"]] == [(50, 50), (50, 50)]
    assert out["messages"] is example["messages"] and plan.placeholders == 0


def test_budget_needs_pil_images():
    example = column_row(["a.png", "b.png"])  # not decoded
    plan = RowPlan(0, ("a.png", "b.png"), column=True, merged=False, upstream_count=2, placeholders=2)
    with pytest.raises(TypeError, match=r"row 0, image 0 is a str, not a PIL image"):
        apply_policies([example], [plan], Settings(max_pixels_per_example=10))


def test_decoded_rows_keep_their_original_entries_where_unchanged():
    # What the collator hands over for a row of paths: the plan holds the decoded images.
    decoded = pics(3)
    example = column_row(["a.png", "b.png", "c.png"])
    plan = RowPlan(0, tuple(decoded), column=True, merged=False, upstream_count=3, placeholders=3)
    [out], [new] = apply_policies([example], [plan], Settings(max_images=2, on_excess="keep_last"))
    assert out["images"] == ["b.png", "c.png"] and new.images == tuple(decoded[1:])
    emb = {"messages": [user({"type": "image", "path": "a.png"}, {"type": "image_url", "image_url": {"url": "b.png"}})]}
    plan = RowPlan(0, tuple(decoded[:2]), column=False, merged=False, upstream_count=2, placeholders=2)
    [out], [new] = apply_policies([emb], [plan], Settings(max_pixels_per_example=32))
    parts = image_parts(out)
    assert [p["image"] for p in parts] == list(new.images) and all(p["image"].size == (4, 4) for p in parts)
    assert parts[1]["image_url"] is None and parts[1]["type"] == "image"


# ---------------------------------------------------------------------------------------------
# grid


@pytest.mark.parametrize(
    "n, layout",
    [
        (1, (1, 1)),
        (2, (2, 1)),
        (3, (2, 2)),
        (4, (2, 2)),
        (5, (3, 2)),
        (6, (3, 2)),
        (7, (3, 3)),
        (8, (3, 3)),
        (9, (3, 3)),
        (10, (4, 3)),
        (17, (5, 4)),
    ],
)
def test_grid_layout(n, layout):
    assert grid_layout(n) == layout


def test_grid_layout_rejects_zero():
    with pytest.raises(ValueError):
        grid_layout(0)


@pytest.mark.parametrize("n", range(2, 10))
@pytest.mark.parametrize("gap", [0, 4])
def test_grid_canvas_size_and_cell_order(n, gap):
    w, h = 30, 20
    canvas = compose_grid(pics(n, (w, h)), gap=gap)
    cols, rows = grid_layout(n)
    assert canvas.mode == "RGB"
    assert canvas.size == (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap)
    for k in range(cols * rows):
        r, c = divmod(k, cols)
        centre = (c * (w + gap) + w // 2, r * (h + gap) + h // 2)
        expected = PALETTE[k] if k < n else (0, 0, 0)
        assert canvas.getpixel(centre) == expected, f"cell {k}"
    if gap:
        assert canvas.getpixel((w + gap // 2, h // 2)) == (0, 0, 0)  # the gap is black


def test_grid_cells_take_the_largest_size_and_centre_smaller_images():
    images = [solid(PALETTE[0], (40, 10)), solid(PALETTE[1], (10, 30)), solid(PALETTE[2], (20, 20))]
    (size, boxes) = cell_boxes([i.size for i in images], gap=2)
    assert size == (2 * 40 + 2, 2 * 30 + 2)
    assert boxes == [(0, 10, 40, 20), (42 + 15, 0, 42 + 25, 30), (10, 32 + 5, 30, 32 + 25)]
    canvas = compose_grid(images, gap=2)
    for img, (x0, y0, x1, y1) in zip(images, boxes):
        assert canvas.crop((x0, y0, x1, y1)).getcolors() == [(img.size[0] * img.size[1], img.getpixel((0, 0)))]
    assert canvas.getpixel((0, 0)) == (0, 0, 0)  # margin above the flat first image
    assert canvas.getpixel((41, 0)) == (0, 0, 0)


def test_grid_never_scales_images():
    images = [solid(PALETTE[0], (7, 3)), solid(PALETTE[1], (5, 9))]
    canvas = compose_grid(images, gap=1)
    assert canvas.size == (7 + 1 + 7, 9)
    colours = dict((c, n) for n, c in canvas.getcolors())
    assert colours[PALETTE[0]] == 21 and colours[PALETTE[1]] == 45


def test_grid_converts_modes_to_rgb():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent: white, as transformers does
    grey = Image.new("L", (4, 4), 100)
    canvas = compose_grid([rgba, grey], gap=0)
    assert canvas.getpixel((1, 1)) == (255, 255, 255) and canvas.getpixel((5, 1)) == (100, 100, 100)


def test_grid_labels():
    plain = compose_grid(pics(4, (40, 40)), gap=2)
    labelled = compose_grid(pics(4, (40, 40)), gap=2, labels=True)
    assert plain.size == labelled.size
    for k in range(4):
        r, c = divmod(k, 2)
        x0, y0 = c * 42, r * 42
        corner = labelled.crop((x0, y0, x0 + 16, y0 + 16)).getcolors(1024)
        assert any(min(colour) >= 200 for _, colour in corner), f"no label in cell {k}"  # white (anti-aliased) text
        assert labelled.getpixel((x0 + 30, y0 + 30)) == PALETTE[k]  # the rest of the cell is untouched
    assert not any(min(colour) >= 200 for _, colour in plain.getcolors(1024))
    # the labels differ from cell to cell ("1", "2", ...)
    crops = [
        labelled.crop((c * 42, r * 42, c * 42 + 16, r * 42 + 16))
        .convert("L")
        .point(lambda v: 255 * (v >= 128))
        .tobytes()
        for r in (0, 1)
        for c in (0, 1)
    ]
    assert len(set(crops)) == 4


def test_grid_labels_grow_with_the_cells():
    small = compose_grid(pics(2, (40, 40)), gap=0, labels=True)
    large = compose_grid(pics(2, (560, 560)), gap=0, labels=True)

    def label_height(canvas):
        ys = [y for y in range(40) if any(canvas.getpixel((x, y)) == (0, 0, 0) for x in range(5))]
        return max(ys) + 1

    assert label_height(large) > label_height(small)


def test_grid_labels_stay_inside_tiny_cells():
    canvas = compose_grid(pics(2, (3, 3)), gap=1, labels=True)
    assert canvas.getpixel((3, 1)) == (0, 0, 0)  # the gap column stays black


def test_compose_grid_rejects_bad_input():
    with pytest.raises(ValueError):
        compose_grid([])
    with pytest.raises(TypeError, match="image 1 is a str"):
        compose_grid([solid(PALETTE[0]), "x.png"])
    with pytest.raises(ValueError):
        compose_grid(pics(2), gap=-1)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_grid_collapses_the_row_to_one_placeholder(layout):
    images = pics(5, (10, 10))
    example = LAYOUTS[layout](images)
    before = copy.deepcopy(example)
    [out], [plan] = run([example], strategy="grid", grid_gap=2)
    assert len(plan.images) == 1
    [canvas] = plan.images
    assert canvas.size == (3 * 10 + 2 * 2, 2 * 10 + 2)
    assert [canvas.getpixel((c * 12 + 5, r * 12 + 5)) for r in (0, 1) for c in (0, 1, 2)][:5] == PALETTE[:5]
    assert_consistent(out, plan)
    assert example == before
    # the one remaining part sits where the first image was
    first_before = next(i for i, m in enumerate(messages_of(example)) if any(is_image_part(p) for p in m["content"]))
    first_after = next(i for i, m in enumerate(messages_of(out)) if any(is_image_part(p) for p in m["content"]))
    assert first_after == first_before


def test_grid_column_vs_embedded_target():
    images = pics(3)
    # column row: a bare placeholder and the canvas in the column
    [out], [plan] = run([column_row(images)], strategy="grid")
    assert image_parts(out) == [IMG] and out["images"] == list(plan.images) and plan.column and not plan.merged
    # embedded row: the part carries the canvas, no column appears
    [out], [plan] = run([embedded_row(images)], strategy="grid")
    assert [p["image"] for p in image_parts(out)] == list(plan.images) and "images" not in out and not plan.column
    # merged row whose first image is embedded: the row used the column, so the canvas goes there
    [out], [plan] = run([merged_row(images, [False, True, True])], strategy="grid")
    [part] = image_parts(out)
    assert part["image"] is None and out["images"] == list(plan.images)
    assert plan.column and not plan.merged and plan.upstream_count == 1
    # merged row with an empty column: the canvas stays in the part, the column stays empty
    [out], [plan] = run([{**embedded_row(images), "images": []}], strategy="grid")
    assert out["images"] == [] and image_parts(out)[0]["image"] is plan.images[0] and plan.merged


def test_grid_leaves_rows_with_zero_or_one_image_alone():
    examples = [
        column_row(pics(1)),
        {"messages": [user(), assistant()]},
        {"messages": [user(), assistant()], "images": []},
    ]
    out_e, out_p = run(examples, strategy="grid")
    assert all(a is b for a, b in zip(out_e, examples))


def test_grid_after_cap_and_budget():
    images = [solid(PALETTE[k], (100, 100)) for k in range(5)]
    [out], [plan] = run(
        [column_row(images)],
        max_images=4,
        on_excess="keep_last",
        max_pixels_per_example=10_000,
        strategy="grid",
        grid_gap=0,
    )
    [canvas] = plan.images
    assert canvas.size == (100, 100)  # 4 cells of 50x50
    assert [canvas.getpixel((x, y)) for y in (25, 75) for x in (25, 75)] == PALETTE[1:5]
    assert_consistent(out, plan)


def test_grid_on_a_column_row_without_placeholders_is_a_clear_error():
    example = {"messages": [{"role": "user", "content": "<|image|><|image|>hi"}], "images": pics(2)}
    with pytest.raises(ImageCountError, match='strategy="grid" cannot tell'):
        run([example], strategy="grid")


def test_configure_reaches_the_settings():
    from unsloth_multiimage.settings import get_settings

    configure(strategy="grid", grid_gap=0, grid_labels=True)
    assert get_settings() == Settings(strategy="grid", grid_gap=0, grid_labels=True)
    reset_settings()
    assert get_settings() == Settings()


# ---------------------------------------------------------------------------------------------
# property: any row, any policy, plans and examples stay consistent


@st.composite
def rows(draw):
    n = draw(st.integers(0, 6))
    sizes = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=n, max_size=n))
    images = [solid(PALETTE[k], size) for k, size in enumerate(sizes)]
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    if layout in ("pc_column", "pc_embedded") and n == 0:
        layout = "column"
    if layout == "merged":
        bare = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return merged_row(images, bare), images
    return LAYOUTS[layout](images), images


@given(
    batch=st.lists(rows(), min_size=1, max_size=4),
    cap=st.one_of(st.none(), st.integers(1, 5)),
    on_excess=st.sampled_from(["keep_first", "keep_last"]),
    budget=st.one_of(st.none(), st.integers(1, 400)),
    strategy=st.sampled_from(["native", "grid", "serial"]),
    gap=st.integers(0, 3),
    labels=st.booleans(),
)
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_plans_and_examples_stay_consistent(batch, cap, on_excess, budget, strategy, gap, labels):
    examples = [e for e, _ in batch]
    before = copy.deepcopy(examples)
    s = Settings(
        max_images=cap,
        on_excess=on_excess,
        max_pixels_per_example=budget,
        strategy=strategy,
        grid_gap=gap,
        grid_labels=labels,
    )
    out_e, out_p = run(
        examples,
        **{
            f: getattr(s, f)
            for f in ("max_images", "on_excess", "max_pixels_per_example", "strategy", "grid_gap", "grid_labels")
        },
    )
    assert examples == before
    assert len(out_e) == len(out_p) == len(examples)
    for row, ((example, images), out, plan) in enumerate(zip(batch, out_e, out_p)):
        assert plan.row == row
        assert_consistent(out, plan)
        kept = [images[i] for i in cap_indices(len(images), cap, on_excess)]
        if strategy == "grid" and len(kept) >= 2:
            assert len(plan.images) == 1
            sizes = [img.size for img in kept]
            if budget is not None:
                sizes = budget_sizes(sizes, budget)
            assert plan.images[0].size == cell_boxes(sizes, gap)[0]
            continue
        assert len(plan.images) == len(kept)
        # order kept: colours identify the images
        assert [img.getpixel((0, 0)) for img in plan.images] == [img.getpixel((0, 0)) for img in kept]
        if budget is not None:
            expected = budget_sizes([img.size for img in kept], budget)
            assert [img.size for img in plan.images] == expected
            if all(w > MIN_SIDE and h > MIN_SIDE for w, h in expected):  # else held at MIN_SIDE
                assert sum(w * h for w, h in expected) <= budget
        else:
            assert all(a is b for a, b in zip(plan.images, kept))
        if strategy == "serial":  # one image per message, the images' order unchanged
            assert all(len(image_parts([m])) <= 1 for m in messages_of(out))
            if not needs_serial(example) and len(kept) == len(images):
                assert out is example or budget is not None
            continue
        if len(kept) == len(images) and (
            budget is None or budget_sizes([i.size for i in images], budget) == [i.size for i in images]
        ):
            assert out is example  # untouched rows keep their objects


# ---------------------------------------------------------------------------------------------
# integration: the REAL collator of the installed unsloth_zoo release

zoo_only = pytest.mark.skipif(UNSLOTH_ZOO is None, reason="unsloth_zoo is not installed on this row")


@pytest.fixture
def collator(vision_utils, model, processor):
    cls = vision_utils.UnslothVisionDataCollator
    return cls(model, processor)


def tile_row(tiny, row, n, size=(28, 28)):
    return column_row([tiny.make_tile_image(row, i, size) for i in range(n)])


def slots(tiny, processor, batch, row):
    pv = batch["pixel_values"]
    return [tiny.decode_tile(pv[row, s, 0], processor) for s in range(pv.shape[1]) if not (pv[row, s] == 0).all()]


@zoo_only
def test_collator_keep_last_sends_the_last_images(tiny, processor, collator, caplog):
    configure(max_images=2, on_excess="keep_last")
    examples = [tile_row(tiny, 0, 3), tile_row(tiny, 1, 1)]
    before = copy.deepcopy(examples)
    with caplog.at_level(logging.WARNING, logger="unsloth_multiimage"):
        batch = collator(examples)
    assert batch["pixel_values"].shape[1] == 2
    assert slots(tiny, processor, batch, 0) == [(0, 1), (0, 2)]
    assert slots(tiny, processor, batch, 1) == [(1, 0)]
    assert (batch["input_ids"][0] == processor.image_token_id).sum() == 2
    assert any("row 0 (3 -> 2)" in r.getMessage() for r in caplog.records)
    assert examples == before


@zoo_only
def test_collator_cap_error_names_the_row(tiny, collator):
    configure(max_images=2)
    with pytest.raises(ImageCountError, match="row 1 has 3 images but max_images=2"):
        collator([tile_row(tiny, 0, 1), tile_row(tiny, 1, 3)])


@zoo_only
def test_collator_keep_first_with_embedded_and_merged_rows(tiny, processor, collator):
    configure(max_images=2, on_excess="keep_first")
    t = tiny.make_tile_image
    embedded = {"messages": [user(carry(t(0, 0))), assistant(), user(carry(t(0, 1)), carry(t(0, 2)))]}
    merged = {"messages": [user(IMG, carry(t(1, 1)), IMG), assistant()], "images": [t(1, 0), t(1, 2)]}
    batch = collator([embedded, merged])
    assert slots(tiny, processor, batch, 0) == [(0, 0), (0, 1)]
    assert slots(tiny, processor, batch, 1) == [(1, 0), (1, 1)]


@zoo_only
def test_collator_grid_sends_one_image_and_trains(tiny, processor, model, collator):
    import torch

    configure(strategy="grid")
    examples = [tile_row(tiny, 0, 3), tile_row(tiny, 1, 1), tile_row(tiny, 2, 2)]
    batch = collator(examples)
    assert batch["pixel_values"].shape[1] == 1  # one image slot per row
    assert (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist() == [1, 1, 1]
    assert slots(tiny, processor, batch, 0)[0] == (0, 0)  # the first cell is image 0
    assert slots(tiny, processor, batch, 1) == [(1, 0)]
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "vision_model" in n
    )


@zoo_only
def test_collator_grid_with_embedded_rows(tiny, processor, collator):
    configure(strategy="grid", max_pixels_per_example=28 * 28 * 4)
    t = tiny.make_tile_image
    embedded = {"messages": [user(carry(t(0, 0, (56, 56)))), assistant(), user(carry(t(0, 1, (56, 56))))]}
    batch = collator([embedded, tile_row(tiny, 1, 2)])
    assert batch["pixel_values"].shape[1] == 1
    assert (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist() == [1, 1]
    assert slots(tiny, processor, batch, 0)[0] == (0, 0)


@zoo_only
def test_collator_grid_and_cap_on_merged_and_prompt_completion_rows(tiny, processor, collator):
    t = tiny.make_tile_image
    configure(strategy="grid")
    merged = {"messages": [user(carry(t(0, 0)), IMG, IMG), assistant()], "images": [t(0, 1), t(0, 2)]}
    batch = collator([merged, tile_row(tiny, 1, 1)])
    assert batch["pixel_values"].shape[1] == 1 and slots(tiny, processor, batch, 0)[0] == (0, 0)
    if not does("unsloth_zoo", "pc_path"):
        return  # no prompt/completion collation on this release
    reset_settings()
    broken = upstream_pc_failure(collator, tiny)
    if broken:
        pytest.skip(f"unsloth_zoo {UNSLOTH_ZOO}'s own prompt/completion path fails on one embedded image: {broken}")
    configure(max_images=2, on_excess="keep_last")
    pc = {"prompt": [user(IMG, IMG, IMG)], "completion": [assistant()], "images": [t(0, 0), t(0, 1), t(0, 2)]}
    batch = collator([pc, {"prompt": [user(IMG)], "completion": [assistant()], "images": [t(1, 0)]}])
    assert slots(tiny, processor, batch, 0) == [(0, 1), (0, 2)]
    assert slots(tiny, processor, batch, 1) == [(1, 0)]


def test_apply_policies_signature_matches_the_collator_call():
    # The collator wrapper calls apply_policies(examples, plans, settings) positionally.
    assert list(inspect.signature(apply_policies).parameters) == ["examples", "plans", "settings"]

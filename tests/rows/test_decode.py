"""Bad and unusual image inputs: each gets a clear error naming the row, or is handled correctly.

docs/bad-inputs.md is the table of what these tests assert (keep them in sync).
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time

import pytest

from tests.support.imagekit import exif_rotated, png_bytes, serve_png, solid
from unsloth_multiimage.rows.decode import MIN_SIDE, ImageLoadError, load_image, needs_decoding

Image = pytest.importorskip("PIL.Image")
np = pytest.importorskip("numpy")


def chat(n_images: int) -> list:
    parts = [{"type": "image"} for _ in range(n_images)]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": "describe the image"}]}]


# ------------------------------------------------------------------ load_image: errors name the row


@pytest.mark.parametrize(
    "obj, message",
    [
        (b"\x89PNG\r\n\x1a\n garbage", r"row 3, image 1 cannot be decoded from \d+ bytes"),
        (b"", r"row 3, image 1 is empty bytes"),
        ("/nonexistent/dir/cat.png", r"row 3, image 1: no such image file '/nonexistent/dir/cat.png'"),
        (42, r"row 3, image 1 is a int, not an image"),
        (3.5, r"row 3, image 1 is a float, not an image"),
        (object(), r"row 3, image 1 is a object, not an image"),
        ({"bytes": None, "path": None}, r"row 3, image 1 is a dict whose 'bytes' and 'path' are both None\."),
        ({"bytes": None}, r"row 3, image 1 is a dict whose 'bytes' is None\."),
        ({"type": "image"}, r"row 3, image 1 is a dict without 'bytes' or 'path'"),
        ("data:image/png;base64,iVBORw0KGgo=", r"row 3, image 1 cannot be decoded from a data: URI of 8 bytes"),
        ("data:image/png;base64,@@@", r"row 3, image 1 is a data URI whose base64 data is invalid"),
        ("data:image/png", r"row 3, image 1 is a malformed data URI"),
        ("file:///nonexistent/cat.png", r"row 3, image 1: no such image file '/nonexistent/cat.png'"),
        ("file://otherhost/cat.png", r"row 3, image 1 is an unsupported image reference"),
        ("s3://bucket/cat.png", r"row 3, image 1 is an unsupported image reference"),
    ],
    ids=[
        "corrupt-bytes",
        "empty-bytes",
        "missing-path",
        "int",
        "float",
        "object",
        "dict-empty",
        "dict-bytes-none",
        "dict-part",
        "data-uri-truncated",
        "data-uri-bad-base64",
        "data-uri-no-comma",
        "file-uri-missing",
        "file-uri-remote",
        "s3-uri",
    ],
)
def test_bad_objects_raise_naming_the_row(obj, message):
    assert needs_decoding(obj)
    with pytest.raises(ImageLoadError, match=message):
        load_image(obj, 3, 1)


def test_data_and_file_uris_decode(tmp_path):
    import base64

    data = png_bytes(solid())
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    for ref in (f"data:image/png;base64,{base64.b64encode(data).decode()}", f"file://{path}", path.as_uri()):
        out = load_image(ref, 0, 0)
        assert out.mode == "RGB" and out.getpixel((0, 0)) == solid().getpixel((0, 0)), ref


def test_an_image_load_error_is_a_value_error():
    assert issubclass(ImageLoadError, ValueError)


def test_corrupt_file_on_disk_names_the_row_and_path(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageLoadError, match=r"row 0, image 2 cannot be decoded from .*broken\.jpg"):
        load_image(str(path), 0, 2)


def test_a_directory_is_not_an_image_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"row 1, image 0: no such image file"):
        load_image(str(tmp_path), 1, 0)


@pytest.mark.parametrize("size", [(0, 0), (0, 28), (28, 0)])
def test_images_without_pixels_raise_naming_the_row(size):
    img = solid(size=size)
    assert needs_decoding(img)
    with pytest.raises(ImageLoadError, match=rf"row 2, image 0 is {size[0]}x{size[1]} pixels: an image with no pixels"):
        load_image(img, 2, 0)


@pytest.mark.parametrize(
    ("size", "enlarged"),
    [
        ((1, 28), (4, 28)),
        ((28, 1), (28, 4)),
        ((1, 1), (4, 4)),
        ((28, 3), (28, 4)),
        ((3, 28), (4, 28)),
        ((2, 9), (4, 9)),
    ],
)
def test_small_sides_are_enlarged_nearest_neighbour_and_said_once(size, enlarged, monkeypatch, caplog):
    from unsloth_multiimage.rows import decode

    monkeypatch.setattr(decode, "_enlarged_logged", threading.Event())
    caplog.set_level("WARNING", logger="unsloth_multiimage")
    img = Image.new("RGB", size)
    img.putdata([((7 * i) % 256, (13 * i) % 256, 99) for i in range(size[0] * size[1])])
    assert needs_decoding(img)
    for source in (img, png_bytes(img), png_bytes(img)):  # the same from an encoded file
        out = load_image(source, 2, 0)
        assert out.size == enlarged and out.mode == "RGB"
        # Nearest neighbour: every pixel is a copy of one of the original's, in the same order.
        assert out.resize(size, Image.Resampling.NEAREST).tobytes() == img.tobytes()
    said = [r.getMessage() for r in caplog.records if "enlarged to" in r.getMessage()]
    assert len(said) == 1 and f"row 2, image 0 is {size[0]}x{size[1]} pixels; enlarged to" in said[0]


def test_the_smallest_accepted_size_loads():
    out = load_image(solid(size=(MIN_SIDE, 28)), 0, 0)
    assert out.size == (MIN_SIDE, 28)


@pytest.mark.parametrize("shape", [(0, 0, 3), (28, 0, 3), (28,), (1, 2, 3, 4)])
def test_arrays_without_pixels_raise(shape):
    arr = np.zeros(shape, dtype=np.uint8)
    assert needs_decoding(arr)
    with pytest.raises(ImageLoadError, match=r"row 0, image 4 is an array of shape"):
        load_image(arr, 0, 4)


def test_rgb_images_pass_through_untouched():
    img = solid()
    assert not needs_decoding(img)
    assert load_image(img, 0, 0) is img


def _coded(height=6, width=5):
    """An HxWx3 uint8 array whose every pixel differs (row, column and channel coded)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([ys * 20 + 10, xs * 30 + 5, np.full_like(ys, 200)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("kind", ["uint8", "float32", "float64", "torch_uint8", "torch_float", "torch_bfloat16"])
def test_arrays_and_tensors_become_the_image_the_processor_would_read(layout, kind):
    hwc = _coded()
    data = hwc if layout == "hwc" else np.moveaxis(hwc, -1, 0)
    if kind.startswith("torch"):
        torch = pytest.importorskip("torch")
        tensor = torch.from_numpy(np.ascontiguousarray(data))
        obj = {
            "torch_uint8": tensor,
            "torch_float": tensor.float() / 255,
            "torch_bfloat16": (tensor.float() / 255).bfloat16(),
        }[kind]
    else:
        obj = data if kind == "uint8" else data.astype(kind) / 255.0
    assert needs_decoding(obj)
    out = load_image(obj, 0, 0)
    assert out.mode == "RGB" and out.size == (5, 6)  # (width, height): never transposed
    got = np.asarray(out).astype(int)
    tolerance = 2 if kind == "torch_bfloat16" else 0  # bfloat16 keeps 8 bits of mantissa
    assert np.abs(got - hwc.astype(int)).max() <= tolerance


def test_grey_and_rgba_arrays():
    grey = load_image(np.full((6, 5), 77, dtype=np.uint8), 0, 0)
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (77, 77, 77)
    single = load_image(np.full((6, 5, 1), 77, dtype=np.uint8), 0, 0)
    assert single.getpixel((4, 5)) == (77, 77, 77)
    rgba = np.zeros((6, 5, 4), dtype=np.uint8)  # fully transparent: white, as convert_to_rgb makes it
    assert load_image(rgba, 0, 0).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    "obj, message",
    [
        (np.linspace(0.0, 300.0, 90).reshape(6, 5, 3), r"values in \[0, 300\]"),
        (np.full((6, 5, 3), -0.5), r"values in \[-0.5, -0.5\]"),
        (np.full((6, 5, 3), np.nan), r"must hold values in \[0, 1\]"),
        (np.full((6, 5, 3), 7, dtype=np.int64), r"only uint8 \(0-255\) and floating point"),
        (np.full((6, 5, 3), 7, dtype=np.uint16), r"only uint8"),
        (np.zeros((6, 5, 3), dtype=bool), r"only uint8"),
        (np.zeros((3, 6, 3), dtype=np.uint8), r"both its first and last axes could be the channels"),
        (np.zeros((6, 5, 2), dtype=np.uint8), r"not an image"),
        (np.zeros((2, 6, 5, 3), dtype=np.uint8), r"not an image"),
    ],
)
def test_arrays_that_have_no_unambiguous_image_raise_naming_the_row(obj, message):
    with pytest.raises(ImageLoadError, match=r"row 3, image 1") as info:
        load_image(obj, 3, 1)
    assert re.search(message, str(info.value)), str(info.value)
    assert info.value.row == 3


# ------------------------------------------------------------------ load_image: modes handled correctly


def _pixel(img):
    return img.convert("RGB").getpixel((0, 0)) if img.mode != "RGB" else img.getpixel((0, 0))


def test_palette_image_keeps_its_colours():
    img = solid().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = load_image(img, 0, 0)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (40, 80, 200)


def test_palette_image_with_transparency_is_composited_on_white():
    img = solid().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    img.info["transparency"] = img.getpixel((0, 0))
    out = load_image(png_bytes(img), 0, 0)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    "mode, colour, want",
    [
        ("RGBA", (40, 80, 200, 255), (40, 80, 200)),
        ("RGBA", (40, 80, 200, 0), (255, 255, 255)),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
        ("LA", (0, 0), (255, 255, 255)),
        ("LA", (100, 255), (100, 100, 100)),
    ],
)
def test_alpha_is_composited_on_white_like_the_mllama_processor(mode, colour, want):
    out = load_image(png_bytes(Image.new(mode, (28, 28), colour)), 0, 0)
    assert out.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(out.getpixel((0, 0)), want)), out.getpixel((0, 0))


def test_cmyk_converts_to_rgb():
    img = Image.new("CMYK", (28, 28), (0, 128, 0, 0))
    for obj in (img, png_bytes(img, "JPEG", quality=100), png_bytes(img, "TIFF")):
        out = load_image(obj, 0, 0)
        assert out.mode == "RGB"
        assert all(abs(a - b) <= 3 for a, b in zip(out.getpixel((0, 0)), (255, 127, 255)))


@pytest.mark.parametrize("mode, colour", [("L", 90), ("1", 1), ("I;16", 0x8080)])
def test_grayscale_and_bilevel_convert_to_rgb(mode, colour):
    out = load_image(Image.new(mode, (28, 28), colour), 0, 0)
    want = {"L": 90, "1": 255, "I;16": 128}[mode]
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (want, want, want)


@pytest.mark.parametrize("value", [0, 257, 0x8080, 65535])
def test_sixteen_bit_png_is_scaled_not_clipped(value):
    img = Image.fromarray(np.full((28, 28), value, dtype=np.uint16))
    data = png_bytes(img)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data, 0, 0)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (round(value / 257),) * 3


def test_sixteen_bit_gradient_keeps_its_order():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    out = np.asarray(load_image(Image.fromarray(ramp), 0, 0))[..., 0]
    assert out[0, 0] == 0 and out[0, -1] == 255 and (np.diff(out[0].astype(int)) >= 0).all()


def test_thirty_two_bit_integer_image_is_read_as_sixteen_bit():
    out = load_image(Image.fromarray(np.full((28, 28), 0x8080, dtype=np.int32)), 0, 0)
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_float_image_in_unit_range_is_scaled():
    out = load_image(Image.fromarray(np.full((28, 28), 0.5, dtype=np.float32)), 0, 0)
    assert out.getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("value", [-1.0, 2.0, float("nan")])
def test_float_image_outside_unit_range_raises(value):
    with pytest.raises(ImageLoadError, match=r"row 5, image 0 is a floating-point image"):
        load_image(Image.fromarray(np.full((28, 28), value, dtype=np.float32)), 5, 0)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_rotation_is_applied_to_decoded_images(fmt):
    out = load_image(exif_rotated(fmt), 0, 0)
    assert out.size == (20, 40)


def test_exif_rotation_is_applied_to_an_already_open_image_once():
    opened = Image.open(io.BytesIO(exif_rotated()))
    assert needs_decoding(opened)
    out = load_image(opened, 0, 0)
    assert out.size == (20, 40)
    assert not needs_decoding(out)  # the orientation tag is gone: never rotated twice
    assert load_image(out, 0, 0) is out


def test_dicts_with_bytes_or_path(tmp_path):
    data = png_bytes(solid())
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for obj in (
        {"bytes": data},
        {"bytes": data, "path": "/does/not/matter.png"},
        {"bytes": None, "path": str(path)},
        {"path": path},
        str(path),
        path,
        bytearray(data),
        memoryview(data),
    ):
        out = load_image(obj, 0, 0)
        assert out.getpixel((0, 0)) == (40, 80, 200), obj


def test_decompression_bomb_names_the_row(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageLoadError, match=r"row 6, image 0 .*too large to decode safely"):
        load_image(png_bytes(solid(size=(100, 100))), 6, 0)


# ------------------------------------------------------------------ URLs: never fetched unless opted in, never hang


def test_urls_are_refused_quickly_without_network(monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("the network was used without opting in")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    start = time.monotonic()
    for url in ("http://example.com/cat.png", "https://example.com/cat.png", "HTTPS://EXAMPLE.COM/CAT.PNG"):
        with pytest.raises(ImageLoadError, match=r"row 1, image 0 is a URL .*UNSLOTH_MULTIIMAGE_ALLOW_URLS=1"):
            load_image(url, 1, 0)
    assert time.monotonic() - start < 1.0


@pytest.fixture
def http_server():
    yield from serve_png()


def test_opted_in_urls_are_fetched(http_server):
    out = load_image(f"{http_server}/cat.png", 0, 0, allow_urls=True)
    assert out.getpixel((0, 0)) == (40, 80, 200)


def test_opted_in_url_errors_name_the_row(http_server):
    with pytest.raises(ImageLoadError, match=r"row 2, image 3: fetching .*/missing.png failed: HTTPError"):
        load_image(f"{http_server}/missing.png", 2, 3, allow_urls=True)


def test_a_silent_server_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        start = time.monotonic()
        with pytest.raises(ImageLoadError, match=r"row 0, image 0: fetching .* failed"):
            load_image(f"http://127.0.0.1:{listener.getsockname()[1]}/x.png", 0, 0, allow_urls=True, timeout=0.5)
        assert time.monotonic() - start < 5
    finally:
        listener.close()


def test_a_huge_image_is_downsized_to_the_pixel_budget():
    import unsloth_multiimage
    from unsloth_multiimage.rows.plan import plan_row
    from unsloth_multiimage.rows.policy import apply_policies

    big, small = solid(size=(4000, 3000)), solid(size=(40, 30))
    example = {"messages": chat(2), "images": [big, small]}
    budget = 200_000
    settings = unsloth_multiimage.configure(max_pixels_per_example=budget)
    _examples, plans = apply_policies([example], [plan_row(example, 0)], settings)
    sizes = [img.size for img in plans[0].images]
    assert len(sizes) == 2
    assert sum(w * h for w, h in sizes) <= budget
    factor = sizes[0][0] / 4000
    for (w, h), (w0, h0) in zip(sizes, [(4000, 3000), (40, 30)]):
        assert abs(w - w0 * factor) <= 1 and abs(h - h0 * factor) <= 1  # one factor, aspect kept up to rounding


def test_the_pixel_budget_never_makes_a_side_the_processor_misreads():
    import unsloth_multiimage
    from unsloth_multiimage.rows.plan import plan_row
    from unsloth_multiimage.rows.policy import apply_policies

    example = {"messages": chat(2), "images": [solid(size=(4000, 3000)), solid(size=(40, 30))]}
    settings = unsloth_multiimage.configure(max_pixels_per_example=200_000)
    _examples, plans = apply_policies([example], [plan_row(example, 0)], settings)
    assert min(min(img.size) for img in plans[0].images) >= MIN_SIDE

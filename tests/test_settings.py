"""configure(), the environment variables and their validation."""

from __future__ import annotations

from typing import Any

import pytest

import unsloth_multiimage
from tests.support.fakesite import (
    ENV_VARS,
    REPO,
)
from unsloth_multiimage import _env, settings

# --------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    settings.reset_settings()
    yield
    settings.reset_settings()


def test_configure_stores_valid_values(clean_settings: None) -> None:
    assert unsloth_multiimage.get_settings() == settings.Settings()
    got = unsloth_multiimage.configure(
        max_images=4, on_excess="keep_last", max_pixels_per_example=2_000_000, strategy="grid"
    )
    assert (got.max_images, got.on_excess, got.max_pixels_per_example, got.strategy) == (
        4,
        "keep_last",
        2_000_000,
        "grid",
    )
    # Later calls merge with the earlier ones.
    got = unsloth_multiimage.configure(grid_gap=0, grid_labels=True, allow_urls=True)
    assert (got.max_images, got.grid_gap, got.grid_labels, got.allow_urls) == (4, 0, True, True)
    assert unsloth_multiimage.get_settings() == got
    assert unsloth_multiimage.configure(max_images=None).max_images is None


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("max_images", 0),
        ("max_images", -3),
        ("max_images", 2.5),
        ("on_excess", "drop"),
        ("max_pixels_per_example", 0),
        ("max_pixels_per_example", "big"),
        ("strategy", "mosaic"),
        ("grid_gap", -1),
    ],
)
def test_configure_rejects_invalid_values_naming_the_field(clean_settings: None, field_name: str, value: Any) -> None:
    unsloth_multiimage.configure(max_images=2)
    with pytest.raises(ValueError, match=field_name):
        unsloth_multiimage.configure(**{field_name: value})
    assert unsloth_multiimage.get_settings().max_images == 2  # nothing stored


def test_configure_rejects_unknown_names(clean_settings: None) -> None:
    with pytest.raises(TypeError, match="unknown settings: max_image$"):
        unsloth_multiimage.configure(max_image=3)
    with pytest.raises(TypeError, match="unknown settings: colour$"):
        unsloth_multiimage.configure(max_images=3, colour="red")
    assert unsloth_multiimage.get_settings().max_images is None


def test_settings_from_environment(clean_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "3")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ON_EXCESS", "keep_first")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_PIXELS", "1000000")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "grid")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_GRID_GAP", "7")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_GRID_LABELS", "yes")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS", "1")
    s = unsloth_multiimage.get_settings()
    assert s == settings.Settings(
        max_images=3,
        on_excess="keep_first",
        max_pixels_per_example=1_000_000,
        strategy="grid",
        grid_gap=7,
        grid_labels=True,
        allow_urls=True,
    )
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "  ")  # blank: ignored
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_ALLOW_URLS", "0")
    assert unsloth_multiimage.get_settings().max_images is None
    assert unsloth_multiimage.get_settings().allow_urls is False


@pytest.mark.parametrize(
    "var, value, named",
    [
        ("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "many", "UNSLOTH_MULTIIMAGE_MAX_IMAGES"),  # not an int
        ("UNSLOTH_MULTIIMAGE_GRID_GAP", "1.5", "UNSLOTH_MULTIIMAGE_GRID_GAP"),
        ("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "0", "max_images"),  # an int, but not a valid one
        ("UNSLOTH_MULTIIMAGE_STRATEGY", "mosaic", "strategy"),
    ],
)
def test_invalid_environment_values_raise(
    clean_settings: None, monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=named):
        unsloth_multiimage.get_settings()
    with pytest.raises(ValueError, match=named):  # configure validates against the environment too
        unsloth_multiimage.configure(grid_labels=True)


def test_configure_wins_over_environment_and_reset_goes_back(
    clean_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES", "3")
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "grid")
    got = unsloth_multiimage.configure(max_images=8)
    assert (got.max_images, got.strategy) == (8, "grid")  # env still supplies the rest
    assert unsloth_multiimage.get_settings().max_images == 8
    unsloth_multiimage.reset_settings()
    assert unsloth_multiimage.get_settings().max_images == 3
    monkeypatch.delenv("UNSLOTH_MULTIIMAGE_MAX_IMAGES")
    monkeypatch.delenv("UNSLOTH_MULTIIMAGE_STRATEGY")
    assert unsloth_multiimage.get_settings() == settings.Settings()


def test_overriding_puts_back_exactly_the_configured_values(
    clean_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.configure(max_images=3)
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "grid")
    with settings.overriding(strategy="native", grid_gap=5) as inside:
        assert (inside.strategy, inside.grid_gap, inside.max_images) == ("native", 5, 3)
    assert settings._overrides == {"max_images": 3}  # the environment's value was not pinned
    monkeypatch.setenv("UNSLOTH_MULTIIMAGE_STRATEGY", "native")
    assert settings.get_settings().strategy == "native"
    with pytest.raises(RuntimeError), settings.overriding(strategy="grid"):
        raise RuntimeError("the block failed")
    assert settings._overrides == {"max_images": 3}


def test_the_readme_lists_every_environment_variable_and_no_other() -> None:
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(UNSLOTH_MULTIIMAGE_[A-Z_]+)", readme, re.M))
    assert listed == {var.name for var in _env.VARIABLES}
    settings_fields = {f.name for f in __import__("dataclasses").fields(settings.Settings)}
    assert {var.setting for var in _env.VARIABLES if var.setting} == settings_fields, "a setting without a variable"

"""A third-party plugin, written against the public API only (copied as ``<module>.py``).

Its configuration is ``<module>.json`` beside it: a list of patches, each with the target
module/attribute and (unless ``"compat": null``) its own compat entry.
"""

from __future__ import annotations

import json
import pathlib

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from unsloth_multiimage.plugin import FixRange, Patch, PatchCompat, hookimpl, signature_accepts

CONFIG = json.loads(pathlib.Path(__file__).with_suffix(".json").read_text(encoding="utf-8"))
CALLS: list = []  # every wrapper call lands here too: observable from the test


def _compat(name: str, raw: dict | None) -> PatchCompat | None:
    if raw is None:
        return None
    return PatchCompat(
        name=name,
        distribution=raw["distribution"],
        target=raw["target"],
        supported=SpecifierSet(raw["supported"]),
        newest_tested=Version(raw["newest_tested"]),
        fixes=tuple(FixRange(f["name"], SpecifierSet(f["needed"]), f.get("why", "")) for f in raw["fixes"]),
    )


def _make_wrapper(patch_name: str):
    def make_wrapper(decision):
        def wrapper(wrapped, instance, args, kwargs):
            CALLS.append((patch_name, type(instance).__name__))
            return {
                "patched_by": patch_name,
                "state": decision.state,
                "fixes": sorted(decision.fixes),
                "inner": wrapped(*args, **kwargs),
            }

        return wrapper

    return make_wrapper


def _shape_check(call):
    # The wrapper relies on ``__call__(self, examples)``.
    return signature_accepts(call, positional=1)


@hookimpl
def umi_patches():
    return [
        Patch(
            name=p["name"],
            module=p["module"],
            attribute=p["attribute"],
            make_wrapper=_make_wrapper(p["name"]),
            shape_check=_shape_check,
            compat=_compat(p["name"], p.get("compat")),
        )
        for p in CONFIG["patches"]
    ]

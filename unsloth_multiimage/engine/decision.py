"""What a patch does on the installed version, and why (kept free of heavy imports)."""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field

__all__ = ["State", "StrEnum", "Decision", "APPLY", "NATIVE", "UNTESTED", "UNSUPPORTED", "ABSENT"]

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, enum.Enum):
        """A str enum whose str() and format() are its value, as 3.11's StrEnum."""

        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, spec: str) -> str:
            return str.__format__(self, spec)


class State(StrEnum):
    """The state of one patch. The first five come from the compat table (:func:`~unsloth_multiimage.engine.compat.decide`);
    the others only from :func:`~unsloth_multiimage.status`, for what happens around the table."""

    APPLY = "apply"  # in the tested range and at least one fix needed: applied
    NATIVE = "native"  # every fix is done upstream on this version: nothing to patch
    UNTESTED = "untested"  # newer than tested: applied only if the target keeps its shape
    UNSUPPORTED = "unsupported"  # older than supported, or an unparsable version: skipped
    ABSENT = "absent"  # the distribution is not installed
    BLOCKED = "blocked"  # named in UNSLOTH_MULTIIMAGE_DISABLE_PATCHES
    DISABLED = "disabled"  # UNSLOTH_MULTIIMAGE_DISABLE=1
    LOST = "lost"  # the target was replaced after patching (module reload)
    INACTIVE = "inactive"  # activate() has not run, or deactivate() did
    PENDING = "pending"  # applied when the target module is imported
    ERROR = "error"  # the plugin providing the patch failed to load


APPLY, NATIVE, UNTESTED, UNSUPPORTED, ABSENT = (
    State.APPLY,
    State.NATIVE,
    State.UNTESTED,
    State.UNSUPPORTED,
    State.ABSENT,
)


@dataclass(frozen=True)
class Decision:
    """What a patch does on one installed version, and why.

    ``applies`` says whether the wrapper is installed; ``fixes`` names the parts of the patch
    that are active (their names are declared by the patch and listed in the compat table).
    """

    state: State
    reason: str
    applies: bool
    version: str | None = None
    fixes: frozenset[str] = field(default_factory=frozenset)

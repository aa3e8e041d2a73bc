"""Other libraries' known noise, hidden from CLI runs so that the plugin's own lines stand out.

Each entry is a message that a library prints on every run of a command on a normal set-up and
that asks nothing of the user; ``unsloth-multiimage -v ...`` shows everything. Nothing here is
installed by ``import unsloth_multiimage``: a training script's output is the script's own.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

__all__ = ["KNOWN_NOISE", "NOISY_WARNINGS", "Noise", "NoiseFilter", "quiet_known_noise"]


@dataclass(frozen=True)
class Noise:
    """A log message to hide: the logger that creates it (or ``""``: any logger whose records
    reach the root handlers), a regex searched in the message, and why it is noise."""

    logger: str
    pattern: str
    why: str


KNOWN_NOISE: tuple[Noise, ...] = (
    Noise(
        "",
        r"(?i)torchao.*\.so\b|(fail|load).*\.so\b|\.so\b.*(fail|load)|skipping import of cpp extensions",
        "torchao's compiled kernels that do not match the installed torch build (re-logged as a WARNING by "
        "whoever imports it); the plugin and the demo never use them",
    ),
    Noise(
        "transformers.utils.import_utils",
        r"requires torchvision \(not installed\); falling back",
        "transformers uses the PIL image processor without torchvision: the same pixels for the plugin",
    ),
    Noise(
        "torch.utils._pytree",
        r"register_constant\(\) on Enum subclasses is deprecated",
        "a library registering an Enum as a pytree constant (the installed torch supports Enums natively); nothing to do",
    ),
    Noise(
        "transformers.trainer_utils",
        r"tokenizer has new PAD/BOS/EOS tokens",
        "the tiny model's tokenizer sets its own special tokens; the Trainer aligns the config, as intended",
    ),
)

#: ``(message regex, category)`` of Python warnings to hide: deprecations inside torch and
#: transformers that their own callers trigger.
NOISY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r".*torch\.utils\._pytree\.\w+` is deprecated", FutureWarning),
    (r".*_pytree.*deprecated", DeprecationWarning),
    # torch's _pytree.register_constant, when two libraries register the same class (two lines each run)
    (r".*is already registered as pytree node", UserWarning),
    (r".*`hidden_state` is deprecated", FutureWarning),
    # huggingface_hub when unsloth_zoo has set HF_HUB_ENABLE_HF_TRANSFER=1 (where hf_transfer is installed)
    (r".*`HF_HUB_ENABLE_HF_TRANSFER` environment variable is deprecated", FutureWarning),
)


class NoiseFilter(logging.Filter):
    """Drops the records of :data:`KNOWN_NOISE` (for the loggers ``names`` it is attached to)."""

    def __init__(self, noise: tuple[Noise, ...] = KNOWN_NOISE) -> None:
        super().__init__()
        self._compiled = [(n.logger, re.compile(n.pattern)) for n in noise]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "unsloth_multiimage" or record.name.startswith("unsloth_multiimage."):
            return True  # the plugin's own lines are never noise
        message = record.getMessage()
        return not any(
            (not name or record.name == name or record.name.startswith(name + ".")) and pattern.search(message)
            for name, pattern in self._compiled
        )


def _replace_filter(target: logging.Filterer, noise_filter: NoiseFilter) -> None:
    """One noise filter per handler or logger, however many commands run in this process."""
    for old in [f for f in target.filters if isinstance(f, NoiseFilter)]:
        target.removeFilter(old)
    target.addFilter(noise_filter)


def quiet_known_noise() -> NoiseFilter:
    """Hide :data:`KNOWN_NOISE` and :data:`NOISY_WARNINGS` for the rest of the process (a CLI run).

    The filter goes on the root logger's handlers (records that propagate) and on each named
    logger (transformers' loggers print through their own handler and do not propagate)."""
    noise_filter = NoiseFilter()
    for handler in logging.getLogger().handlers:
        _replace_filter(handler, noise_filter)
    for name in {n.logger for n in KNOWN_NOISE if n.logger}:
        _replace_filter(logging.getLogger(name), noise_filter)
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    return noise_filter

#!/usr/bin/env python3
"""Print the README's compatibility table, generated from compat/matrix.toml + compat_table.toml.

    python scripts/compat_table_md.py                 # print the markdown table
    python scripts/compat_table_md.py --check README.md   # exit 1 (with a diff) if the README's block differs
    python scripts/compat_table_md.py --write README.md   # replace the README's block

The block is the text between ``<!-- compat-table:start -->`` and ``<!-- compat-table:end -->``.
Decisions come from unsloth_multiimage/engine/compat.py of this checkout (imported without the package's
``__init__``, so only ``packaging`` is needed, not the installed package nor its dependencies).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import types
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MATRIX_PATH = ROOT / "compat" / "matrix.toml"
TABLE_PATH = ROOT / "unsloth_multiimage" / "engine" / "compat_table.toml"
COMPAT_PATH = ROOT / "unsloth_multiimage" / "engine" / "compat.py"
START = "<!-- compat-table:start -->"
END = "<!-- compat-table:end -->"

# Short words for each fix, in the table's cells.
FIX_WORDS = {
    "flat_images_regroup": "flat image list regrouped",
    "dropped_rows_realign": "dropped rows realigned",
    "mixed_text_only_rows": "text-only rows in image batches",
    "row_named_errors": "errors name the row",
    "truncation_check": "truncation check",
    "padding_side_kwarg": "padding_side honoured",
    "all_column_images": "every images-column image",
    "text_only_row_slots": "text-only rows kept",
    "pc_column_images": "prompt/completion images",
    "none_entries": "None entries reported",
    "column_content_merge": "column + content images merged",
    "row_count_validation": "per-row count check",
    "pc_extract_tuple": "prompt/completion rows collate",
    "pc_cross_attention": "prompt/completion cross-attention mask",
    "row_vision_inputs": "family's vision inputs carried",
    "completion_cross_attention": "cross-attention mask over completions",
    "left_padded_generation": "cross-attention mask left-padded for generation",
    "vllm_image_limit": "vLLM images per prompt raised",
    "packed_train_batches": "training batches packed (configure(packing=True))",
    "packed_documents": "packed documents' cross-attention kept apart",
}
PATCH_TITLES = {
    "mllama_processor": "MllamaProcessor patch",
    "unsloth_collator": "UnslothVisionDataCollator patch",
    "unsloth_collator_pc_extract": "prompt/completion extraction patch",
    "trl_grpo_rollout": "GRPO rollout patch",
    "trl_grpo_loss": "GRPO loss patch",
    "trl_dpo_collator": "DPO vision collator patch",
    "vllm_image_limit": "vLLM image limit patch",
    "vllm_image_limit_inline": "vLLM image limit patch (inline releases)",
    "trainer_packing": "Trainer packing patch",
    "mllama_packed_cross_attention": "Mllama packed cross-attention patch",
}


def load_compat():
    """unsloth_multiimage.compat from this checkout, without running the package's __init__
    (which activates the patches and needs wrapt/pluggy): a bare parent package is registered
    whose __path__ is the source folder, so only compat.py and its light siblings are imported."""
    name = "_umi_checkout"
    if name + ".compat" in sys.modules:
        return sys.modules[name + ".compat"]
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(COMPAT_PATH.parent)]
    pkg.__package__ = name
    sys.modules[name] = pkg
    return importlib.import_module(name + ".compat")


def load_matrix(path: Path = MATRIX_PATH) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _pin(version: str | None) -> str:
    return "—" if version is None else version.split("+")[0]


def decision_cell(decision, entry) -> str:
    if decision.state == "absent":
        return "absent (not installed)"
    if not decision.fixes:
        return decision.state
    active = [f.name for f in entry.fixes if f.name in decision.fixes]  # in the table's order
    return f"{decision.state}: " + ", ".join(FIX_WORDS.get(f, f) for f in active)


def render(matrix: dict | None = None, table_text: str | None = None) -> str:
    """The markdown table (no markers), ending with a newline."""
    compat = load_compat()
    matrix = matrix if matrix is not None else load_matrix()
    raw = tomllib.loads(table_text if table_text is not None else TABLE_PATH.read_text(encoding="utf-8"))
    table = compat._parse_table(raw)
    patches = list(table)
    header = ["row", "python", "torch", "transformers", "unsloth_zoo", "trl", "datasets"]
    header += [PATCH_TITLES.get(p, p) for p in patches]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for name, row in matrix["rows"].items():
        cells = [f"`{name}`", row["python"], _pin(row.get("torch")), row["transformers"], _pin(row.get("unsloth_zoo"))]
        cells += [row.get("trl", "—"), row.get("datasets", "—")]
        for patch in patches:
            version = row.get(table[patch].distribution)
            cells.append(decision_cell(compat.decide(patch, version, table=table), table[patch]))
        lines.append("| " + " | ".join(cells) + " |")
    legend = []
    for patch in patches:
        entry = table[patch]
        legend.append(
            f"- {PATCH_TITLES.get(patch, patch)} (`{entry.distribution}`): supported {entry.supported}, "
            f"newest tested {entry.newest_tested}; newer versions are patched only if the target keeps its shape."
        )
    text = "\n".join(lines) + "\n\n" + "\n".join(legend) + "\n"
    text += "\nGenerated by `python scripts/compat_table_md.py --write README.md` from `compat/matrix.toml`; CI runs every row.\n"
    return text


def split_block(text: str) -> tuple[str, str, str] | None:
    """(before, block, after) around the markers, or None when the markers are missing."""
    start = text.find(START)
    end = text.find(END, start + len(START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    head = start + len(START)
    return text[:head], text[head:end], text[end:]


def wrap(table: str) -> str:
    return "\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="README", type=Path, help="exit 1 if the README block differs")
    group.add_argument("--write", metavar="README", type=Path, help="replace the README block")
    args = parser.parse_args(argv)
    table = render()
    target = args.check or args.write
    if target is None:
        sys.stdout.write(table)
        return 0
    text = target.read_text(encoding="utf-8")
    parts = split_block(text)
    if parts is None:
        print(f"{target}: no {START} ... {END} block", file=sys.stderr)
        return 2
    before, block, after = parts
    wanted = wrap(table)
    if args.check:
        if block == wanted:
            print(f"{target}: compat table up to date")
            return 0
        diff = difflib.unified_diff(
            block.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            fromfile=f"{target} (compat-table block)",
            tofile="generated",
        )
        sys.stdout.writelines(diff)
        print(
            f"\n{target}: compat table is stale; run python scripts/compat_table_md.py --write {target}",
            file=sys.stderr,
        )
        return 1
    if block != wanted:
        target.write_text(before + wanted + after, encoding="utf-8")
        print(f"{target}: compat table written")
    else:
        print(f"{target}: compat table already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

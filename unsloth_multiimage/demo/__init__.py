"""The demo harness: ``unsloth-multiimage demo`` and ``demo --compare``, their synthetic data and what
they share (the tiny offline Llama-3.2-Vision model is :mod:`unsloth_multiimage.tiny_mllama`).

An experiment harness, not the runtime: nothing in the package imports it except the CLI, which
dispatches to it (tests/engine/test_layers.py, tests/engine/test_runtime_closure.py). Modules:
:mod:`.demo` (fine-tune and check), :mod:`.compare` (the five-arm A/B), :mod:`.compare_data` /
:mod:`.demo_data` (synthetic rows), :mod:`.compare_report` (table, plot, summary),
:mod:`.training` (collator, banner, model).
"""

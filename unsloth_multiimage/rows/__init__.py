"""The row layer: pure Python + PIL, no torch, no transformers, nothing above it.

- :mod:`.chat`: the chat walker (one notion of "image part");
- :mod:`.shape`: row shapes diagnosed before upstream runs;
- :mod:`.plan`: every image of a row, in placeholder order;
- :mod:`.decode`: paths, bytes, dicts, arrays -> PIL, with row-named errors;
- :mod:`.policy` and :mod:`.grid`: cap, pixel budget, early fusion;
- :mod:`.pipeline`: the stages above, in order, for a batch (what every caller runs).

Its errors are :mod:`unsloth_multiimage.errors` (``ValueError`` subclasses naming the row).
"""

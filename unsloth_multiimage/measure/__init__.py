"""Measurements over prepared rows and a processor (no command line, no printing): the layer between
the runtime (rows, adapters, patches) and the commands in :mod:`unsloth_multiimage.tools`.

- :mod:`.tokens`: how many tokens each row becomes, which rows ``max_seq_length`` would cut, and
  the settings that would fit (``doctor --dataset FILE --max-seq-length N``).
"""

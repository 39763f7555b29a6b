"""The ``textgen`` command line (installed as ``textgen.cli``): parsing, inputs, printing, the REPL.

Modules here import each other relatively (``from .console import fail``) or as ``textgen.cli.X``:
the folder is installed under the name ``textgen.cli``, so ``import cli`` does not work outside a
checkout. Nothing here imports torch or transformers at module level, so ``textgen --help`` is
instant; command bodies import the library's heavy parts when they run.
"""

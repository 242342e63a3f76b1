"""``python -m normscope``, the same as the ``normscope`` command (and what torchrun's
``-m normscope`` starts in every process)."""

from normscope.cli import main

if __name__ == "__main__":
    main()

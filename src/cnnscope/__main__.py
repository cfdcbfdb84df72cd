"""``python -m cnnscope``: the same as the ``cnnscope`` command."""

from .cli import main

raise SystemExit(main())

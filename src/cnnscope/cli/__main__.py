"""``python -m cnnscope.cli``: the same as the ``cnnscope`` command."""

from . import main

raise SystemExit(main())

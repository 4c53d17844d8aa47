"""``python -m werk_trio``: the ``werk`` command line (``python -m werk_trio --version``)."""

from .cli import main

raise SystemExit(main())

"""``python -m router``: the ``beacon-router`` command without its console script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

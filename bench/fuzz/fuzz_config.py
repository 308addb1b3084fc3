"""Fuzz the config loader: a Config, or a ConfigError naming where — never another error."""

from __future__ import annotations

import atheris
from common import main

with atheris.instrument_imports():
    from router.config.loader import loads
    from router.errors import ConfigError


def check(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        loads(text, file="fuzz.yaml", env={"SET": "value"})
    except ConfigError as exc:
        assert str(exc), "a config error must say what is wrong"


if __name__ == "__main__":
    main(check)

"""The ``beacon-router`` command (being written)."""


def main() -> int:
    return 0

"""Fuzz the form beacon decoder: events or a proper InputError, nothing else."""

from __future__ import annotations

from common import beacon_check, main

if __name__ == "__main__":
    main(beacon_check("application/x-www-form-urlencoded"))

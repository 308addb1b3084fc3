"""The hash filter's key when the config gives none: generated once into a file, 0600."""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path as FsPath

import structlog

from ..errors import ConfigError

log = structlog.get_logger()

MIN_KEY = 16  # characters
_KEY_BYTES = 32


def load_or_create_key(key_file: str) -> bytes:
    """The key stored in ``key_file``; created once (random, mode 0600, atomically) if absent.

    The file holds hex text and the key is that text, so copying the file's content into
    ``BEACON_HASH_KEY`` later keeps every hash the same.
    """
    path = FsPath(key_file)
    if not path.exists():
        _create_key(path)
    return _read_key(path)


def _create_key(path: FsPath) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hash.key.")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            # link() refuses to replace: when two processes start at once, both use the first
            # one's key, where a rename would let the last writer win behind the other's back.
            os.link(tmp, path)
        except FileExistsError:
            return
        finally:
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the hash key file: {exc.strerror or exc}", file=str(path)
        ) from exc
    log.warning(
        "hash_key_generated",
        key_file=str(path),
        hint="back this file up: losing it changes every hash",
    )


def _read_key(path: FsPath) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the hash key file: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:  # its message would quote a byte of the key
        raise ConfigError("the hash key file is not UTF-8 text", file=str(path)) from exc
    if len(text) < MIN_KEY:
        raise ConfigError(
            f"the hash key file holds under {MIN_KEY} characters; restore it, or "
            "delete it to generate a new key (every hash changes)",
            file=str(path),
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("hash_key_file_readable_by_others", key_file=str(path), hint="chmod 600 it")
    return text.encode("utf-8")


def _fsync_dir(directory: FsPath) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories; the file itself is already synced
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Find secrets at rest: in files, SQLite databases, persisted Prefect results and SQL dumps.

:func:`scan` reads every file under the given paths and looks for each secret (as UTF-8 text), also
inside what Prefect stores encoded: a persisted result is JSON whose ``result`` is base64 of the
pickled value, so every base64 run in a file is decoded and searched too. A finding names
the file and which secret (by its label, never its value).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from pathlib import Path

_B64 = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")


def _decoded_blobs(data: bytes) -> Iterable[bytes]:
    """Base64 runs in ``data`` (e.g. a persisted result's pickled payload), decoded."""
    for match in _B64.finditer(data):
        chunk = match.group(0)
        try:
            yield base64.b64decode(chunk + b"=" * (-len(chunk) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue


def find_in_bytes(data: bytes, secrets: dict[str, str]) -> set[str]:
    """The labels of the secrets present in ``data``, plainly or base64-encoded inside it."""
    found = {label for label, value in secrets.items() if value.encode() in data}
    for blob in _decoded_blobs(data) if len(found) < len(secrets) else ():
        found |= {label for label, value in secrets.items() if value.encode() in blob}
    return found


def scan(paths: Iterable[Path], secrets: dict[str, str]) -> list[str]:
    """``["<file>: <label>", ...]`` for every secret found in every file under ``paths``."""
    findings = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            findings += [f"{path}: {label}" for label in sorted(find_in_bytes(data, secrets))]
    return findings


def scanned_files(paths: Iterable[Path]) -> int:
    """How many files :func:`scan` would read (so a test can tell it looked at something)."""
    return sum(1 if root.is_file() else sum(1 for p in root.rglob("*") if p.is_file()) for root in paths)

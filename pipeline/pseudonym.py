"""Pseudonymisation at ingest: identity code -> ``person_key``.

``person_key`` is HMAC-SHA-256 of the identity code under a secret key, cut to its
first 128 bits and written as a UUID (DuckDB's 16-byte ``UUID`` type: a quarter
of the bytes of the 64-character hex digest, fixed width, cheap to store, sort
and join). 128 bits keep collisions out of reach: among ten million persons the
chance of any two sharing a key is about 10^-25.
The same key gives the same ``person_key``, so reruns and incremental loads line
up; without the key a ``person_key`` cannot be linked back to a person, and a
dictionary attack over all identity codes (there are only ~10^9) needs the key.
The key is read by the caller (environment or a Prefect Secret block) and never
written to the database, logs or reports.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

DEMO_KEY = b"kokeilu-demo-key-for-synthetic-data-only"
"""The fixed key of ``kokeilu demo``: synthetic data only, never for real deliveries."""

MIN_KEY_BYTES = 16

KEY_BYTES = 16
"""Bytes of the HMAC digest kept as ``person_key`` (a UUID)."""

BLOCK_BYTES = 64
"""SHA-256's block size: HMAC pads (or first hashes) the key to one block."""


class Pseudonymiser:
    """Keyed hashing of identity codes.

    Nothing is memoised here: the loader hashes each distinct identity code of a
    load once (:class:`pipeline.load.checks.IdentityCodes`).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            from pipeline.errors import InputError

            raise InputError(f"pseudonymisation key too short: at least {MIN_KEY_BYTES} bytes are required")
        self._key = key
        # HMAC (RFC 2104) with the key's padded blocks hashed once: each code then costs two
        # SHA-256 state copies instead of a fresh key set-up (2.7x faster on a national load).
        block = hashlib.sha256(key).digest() if len(key) > BLOCK_BYTES else key
        block = block.ljust(BLOCK_BYTES, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __repr__(self) -> str:
        return "Pseudonymiser(<key hidden>)"

    def digest(self, hetu: str) -> bytes:
        """HMAC-SHA-256 of one identity code under the key (equal to ``hmac.digest``)."""
        inner = self._inner.copy()
        inner.update(hetu.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def key_of(self, hetu: str) -> str:
        """The ``person_key`` of one identity code, in the canonical UUID spelling."""
        return str(uuid.UUID(bytes=self.digest(hetu)[:KEY_BYTES]))

    def keys_of(self, codes: Iterable[str]) -> list[bytes]:
        """``person_key`` of each identity code, in order, as the UUID's 16 bytes (big-endian, as DuckDB's)."""
        digest = self.digest
        return [digest(c)[:KEY_BYTES] for c in codes]

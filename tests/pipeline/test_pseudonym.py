"""Pseudonymisation: the fast HMAC is HMAC-SHA-256, and the person_key is its first 128 bits as a UUID."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.pseudonym import DEMO_KEY, Pseudonymiser


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=200), st.lists(st.text(alphabet="0123456789-+ABCDEFUVWXY", max_size=12),
                                                       max_size=5))
def test_digest_equals_the_standard_library_hmac(key: bytes, codes: list[str]) -> None:
    """Keys shorter than, equal to and longer than SHA-256's 64-byte block."""
    p = Pseudonymiser(key)
    for code in codes:
        expected = hmac.digest(key, code.encode("ascii"), hashlib.sha256)
        assert p.digest(code) == expected
        assert p.key_of(code) == str(uuid.UUID(bytes=expected[:16]))
    assert p.keys_of(codes) == [hmac.digest(key, c.encode("ascii"), hashlib.sha256)[:16] for c in codes]


def test_known_vector() -> None:
    """RFC 4231 test case 2 (key "Jefe" is too short for kokeilu, so its digest is compared via a padded key)."""
    key = b"Jefe" + b"\0" * 60  # zero-padding to the block is what HMAC does with a short key
    data = "what do ya want for nothing?"
    assert Pseudonymiser(key).digest(data).hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_short_key_is_refused_and_the_key_never_shows() -> None:
    with pytest.raises(InputError, match="too short"):
        Pseudonymiser(b"short")
    assert "kokeilu-demo" not in repr(Pseudonymiser(DEMO_KEY))

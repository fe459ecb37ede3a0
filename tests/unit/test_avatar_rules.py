"""The pure rules of avatars (``bridge.core.avatar``): what a picture may be, and the
rate window that bounds how often one goes to, or is kept from, a contact."""

from __future__ import annotations

import pytest

from bridge.core.avatar import MAX_AVATAR, ChangeRate, media_type
from bridge.core.errors import MalformedError


def test_only_a_small_png_or_jpeg_is_a_picture() -> None:
    assert media_type(b"\x89PNG\r\n\x1a\n" + bytes(10)) == "image/png"
    assert media_type(b"\xff\xd8\xff\xe0" + bytes(10)) == "image/jpeg"
    assert media_type(b"\xff\xd8\xff" + bytes(MAX_AVATAR - 3)) == "image/jpeg"
    for bad in (b"", b"GIF89a", b"\x89PNG\r\n", b"<svg/>", b"\xff\xd8\xff" + bytes(MAX_AVATAR)):
        with pytest.raises(MalformedError):
            media_type(bad)


def test_the_rate_window_counts_and_frees() -> None:
    rate = ChangeRate(2, 60.0)
    assert rate.take(0.0) and rate.take(10.0)
    assert not rate.take(20.0) and not rate.allows(59.9)
    assert rate.next_free(20.0) == 60.0
    assert rate.take(60.0)  # the first left the window
    assert rate.next_free(61.0) == 70.0
    assert rate.next_free(200.0) == 200.0

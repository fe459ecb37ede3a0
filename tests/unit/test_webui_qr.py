"""QR invitations: SVG drawing and reading codes back from uploaded pictures."""

from __future__ import annotations

import io

import pytest
import segno
from PIL import Image

from webui.qr import MAX_PIXELS, QrImageError, decode_qr, invitation_svg

LINK = "paranoim:1/" + "a" * 56 + "?nick=Alice&c=abcdef"


def png_of(text: str, scale: int = 5) -> bytes:
    buf = io.BytesIO()
    segno.make_qr(text).save(buf, kind="png", scale=scale)
    return buf.getvalue()


def test_svg_is_inline_and_inert() -> None:
    svg = invitation_svg(LINK)
    assert svg.startswith("<svg") and 'class="qr"' in svg and "viewBox" in svg
    assert "<?xml" not in svg and "style" not in svg and "script" not in svg
    assert "width=" not in svg.split(">")[0]  # sized by CSS


def test_round_trip_png() -> None:
    assert decode_qr(png_of(LINK)) == LINK


def test_photo_like_jpeg_with_rotation_and_exif_orientation() -> None:
    code = Image.open(io.BytesIO(png_of(LINK, 8))).convert("RGB")
    canvas = Image.new("RGB", (code.width * 4, code.height * 3), (120, 130, 120))
    canvas.paste(code, (code.width, code.height // 2))
    photo = canvas.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=85, exif=exif)
    assert decode_qr(buf.getvalue()) == LINK


def test_large_photo_is_scanned_at_reduced_size() -> None:
    code = Image.open(io.BytesIO(png_of(LINK, 40))).convert("L")
    canvas = Image.new("L", (5000, 4000), 200)
    canvas.paste(code, (1500, 1000))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=80)
    assert decode_qr(buf.getvalue()) == LINK


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "Choose a picture"),
        (b"GIF89a-but-not-really", "not a picture"),
        (b"%PDF-1.4 not an image", "not a picture"),
    ],
)
def test_unusable_uploads(data: bytes, words: str) -> None:
    with pytest.raises(QrImageError, match=words):
        decode_qr(data)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 100
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG")  # small file, huge picture
    assert len(buf.getvalue()) < 2_000_000
    with pytest.raises(QrImageError, match="megapixels"):
        decode_qr(buf.getvalue())


def test_truncated_image_is_damaged() -> None:
    data = png_of(LINK, 10)
    with pytest.raises(QrImageError, match=r"damaged|not a picture"):
        decode_qr(data[: len(data) // 2])


def test_picture_without_code() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(buf, "PNG")
    with pytest.raises(QrImageError, match="No QR code"):
        decode_qr(buf.getvalue())


def test_unsupported_format_is_named() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), "white").save(buf, "TIFF")
    with pytest.raises(QrImageError, match="PNG, JPEG"):
        decode_qr(buf.getvalue())

"""QR codes: draw an invitation as inline SVG, read one back from an uploaded photo.

Drawing uses segno's ``make_qr`` (plain ``make`` may pick Micro QR, which most
phone scanners cannot read). Reading uses zxing-cpp on a Pillow image, with
limits checked before any pixel is decoded: file size (by the body limit),
format, and pixel count; large photos are decoded at reduced size.
"""

from __future__ import annotations

import io
import warnings

import segno
import zxingcpp
from PIL import Image, ImageOps, UnidentifiedImageError

from bridge.core.errors import UserError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel phone photo; anything larger is refused unread
DECODE_EDGE = 2000  # pixels: photos are scaled down to this before scanning
FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})


class QrImageError(UserError):
    """The uploaded picture cannot be used; the message says why."""


def invitation_svg(link: str) -> str:
    """An SVG element (no XML declaration, sized by CSS through its viewBox)."""
    qr = segno.make_qr(link, error="m")
    return str(
        qr.svg_inline(scale=1, border=4, dark="#000", light="#fff", omitsize=True, svgclass="qr")
    )


def decode_qr(data: bytes) -> str:
    """The text of the first QR code in an image; blocking, run it off the event loop."""
    if not data:
        raise QrImageError("Choose a picture of the QR code first.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise QrImageError("That picture is too large; the limit is 8 MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise QrImageError("Use a PNG, JPEG, WebP or GIF picture.")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise QrImageError(
                    f"That picture has {width * height / 1e6:.0f} megapixels; "
                    "take a smaller photo of the code."
                )
            image.draft("L", (DECODE_EDGE, DECODE_EDGE))  # JPEG: decode at reduced size
            image = ImageOps.exif_transpose(image) or image
            image = image.convert("L")
            image.thumbnail((DECODE_EDGE, DECODE_EDGE))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise QrImageError("That file is not a picture this page can read.") from None
    except (OSError, ValueError, SyntaxError):
        raise QrImageError("That picture is damaged or incomplete.") from None
    found = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    if not found:
        raise QrImageError(
            "No QR code found in that picture. Fill the frame with the code, "
            "hold the camera steady and try again."
        )
    return str(found[0].text).strip()

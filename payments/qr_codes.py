"""QR codes for payment URIs, as scalable SVG (screens) or PNG (receipts, e-mail).

Error correction level M. Measured with the BIP21 payloads we produce (an
upper-case bech32 address, an amount and a shop label): L is one QR version
smaller than M (e.g. version 4 vs 5, 33 vs 37 modules). That does not matter on a
full-screen tablet QR (about 20 px per module either way), while M's ~15 %
recovery tolerates screen glare, smudges and cracked phone-holder screens, and
printed stickers and receipts. So: M.

The quiet zone is the standard 4 modules. The SVG has a white background
(a transparent QR on a dark-mode page does not scan), a viewBox in module
units and width/height 100 %, so it fills whatever box the page gives it.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
import qrcode.image.svg

__all__ = ["ERROR_CORRECTION", "build_qr", "render_svg", "render_png"]

ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
QUIET_ZONE = 4  # modules, as ISO/IEC 18004 requires


class _ScalableSvgPathImage(qrcode.image.svg.SvgPathFillImage):
    """One <path>, white background, scales to its container."""

    def _svg(self, viewBox=None, **kwargs):
        svg = super()._svg(viewBox=viewBox, **kwargs)
        svg.set("width", "100%")
        svg.set("height", "100%")
        svg.set("preserveAspectRatio", "xMidYMid meet")
        svg.set("shape-rendering", "crispEdges")  # no anti-aliased seams between modules
        return svg

    def process(self):
        super().process()
        # The library gives the path a fixed id; two QR codes on one page would clash.
        self.path.attrib.pop("id", None)


def build_qr(payload: str, box_size: int = 10) -> qrcode.QRCode:
    """The fitted QRCode object for ``payload`` (smallest version at level M)."""
    if not isinstance(payload, str) or not payload:
        raise ValueError("a QR payload must be non-empty text")
    qr = qrcode.QRCode(
        version=None,
        error_correction=ERROR_CORRECTION,
        box_size=box_size,
        border=QUIET_ZONE,
    )
    qr.add_data(payload)
    qr.make(fit=True)
    return qr


def render_svg(payload: str) -> bytes:
    """An SVG document (UTF-8 bytes) of the QR code for ``payload``."""
    # box_size 10 is "1 unit per module" for qrcode's SVG factories: viewBox "0 0 N N".
    image = build_qr(payload, box_size=10).make_image(image_factory=_ScalableSvgPathImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def render_png(payload: str, box_size: int = 8) -> bytes:
    """A PNG (1-bit, black on white) of the QR code for ``payload``."""
    if isinstance(box_size, bool) or not isinstance(box_size, int) or not 1 <= box_size <= 100:
        raise ValueError(f"box_size must be an int from 1 to 100, got {box_size!r}")
    image = build_qr(payload, box_size=box_size).make_image()
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()

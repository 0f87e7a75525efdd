"""QR rendering (payments/qr_codes.py), decoded back with zbar.

The SVG is checked without cairosvg: the test rasterizes the SVG's path itself
(the factory draws each dark module as an "M x,y H x+1 V y+1 H x z" square),
decodes that image with zbar, and compares the module grid with the PNG's.
"""

import io
import re
import xml.etree.ElementTree as ET

import pytest
import qrcode
from PIL import Image, ImageDraw

from payments.bip21 import parse_payment_uri, payment_uri
from payments.qr_codes import build_qr, render_png, render_svg

pyzbar = pytest.importorskip("pyzbar.pyzbar", reason="needs libzbar0 (apt-get install libzbar0)")

BECH32 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
REGTEST = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
P2PKH = "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA"
SVG_NS = "{http://www.w3.org/2000/svg}"

LABELS = [
    "Haeundae Coffee",
    "해운대 횟집 & 바",
    "부산 어묵 #1 ?맛집=최고",
    "釜山の店",
    "海云台咖啡馆",
    "광안리 해변 포장마차 (Gwangalli Beach Pojangmacha)",
]


def _decode_png(png: bytes) -> list[str]:
    image = Image.open(io.BytesIO(png))
    return [r.data.decode("ascii") for r in pyzbar.decode(image) if r.type == "QRCODE"]


_SQUARE = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H(\d+)z")


def _svg_modules(svg: bytes) -> tuple[int, set[tuple[int, int]]]:
    """(viewBox size in modules, set of dark (x, y) modules) from our SVG."""
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    x0, y0, w, h = (int(v) for v in root.get("viewBox").split())
    assert (x0, y0) == (0, 0) and w == h
    paths = root.findall(SVG_NS + "path")
    assert len(paths) == 1
    d = paths[0].get("d")
    squares = _SQUARE.findall(d)
    assert "".join(f"M{a},{b}H{c}V{e}H{f}z" for a, b, c, e, f in squares) == d
    dark = set()
    for x, y, x2, y2, x3 in squares:
        x, y, x2, y2, x3 = map(int, (x, y, x2, y2, x3))
        assert (x2, y2, x3) == (x + 1, y + 1, x)  # one whole module per square
        dark.add((x, y))
    return w, dark


def _rasterize(size: int, dark: set[tuple[int, int]], scale: int = 8) -> bytes:
    image = Image.new("1", (size * scale, size * scale), 1)
    draw = ImageDraw.Draw(image)
    for x, y in dark:
        draw.rectangle([x * scale, y * scale, (x + 1) * scale - 1, (y + 1) * scale - 1], fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _png_modules(png: bytes, box_size: int) -> tuple[int, set[tuple[int, int]]]:
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.width == image.height and image.width % box_size == 0
    size = image.width // box_size
    dark = {
        (x, y)
        for y in range(size)
        for x in range(size)
        if image.getpixel((x * box_size + box_size // 2, y * box_size + box_size // 2)) < 128
    }
    return size, dark


# ------------------------------------------------------------------ PNG

@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("for_qr", [True, False])
def test_png_decodes_with_zbar_to_exactly_the_payment_uri(label, for_qr):
    uri = payment_uri(BECH32, 150_000, label, for_qr=for_qr)
    assert _decode_png(render_png(uri)) == [uri]


def test_korean_label_round_trips_from_the_scanned_png_to_the_invoice_values():
    uri = payment_uri(REGTEST, 12_345, "해운대 횟집 & 바", "주문 #42", for_qr=True)
    [scanned] = _decode_png(render_png(uri))
    parsed = parse_payment_uri(scanned)
    assert parsed["address"] == REGTEST
    assert parsed["sats"] == 12_345
    assert parsed["label"] == "해운대 횟집 & 바"
    assert parsed["message"] == "주문 #42"


def test_zbar_keeps_the_upper_case_of_a_bech32_address():
    uri = payment_uri(BECH32, 1, for_qr=True)
    [scanned] = _decode_png(render_png(uri))
    assert BECH32.upper() in scanned


def test_a_base58_address_decodes_unchanged():
    uri = payment_uri(P2PKH, 99_999, "Shop", for_qr=True)
    assert _decode_png(render_png(uri)) == [uri]


@pytest.mark.parametrize("box_size", [3, 8, 12])
def test_png_box_size_sets_the_module_size_and_still_decodes(box_size):
    uri = payment_uri(BECH32, 150_000, "Shop", for_qr=True)
    png = render_png(uri, box_size=box_size)
    qr = build_qr(uri)
    modules = qr.modules_count + 2 * 4
    assert Image.open(io.BytesIO(png)).size == (modules * box_size, modules * box_size)
    assert _decode_png(png) == [uri]


@pytest.mark.parametrize("box_size", [0, -1, 101, 2.5, True])
def test_png_refuses_a_silly_box_size(box_size):
    with pytest.raises(ValueError):
        render_png("bitcoin:x", box_size=box_size)


def test_an_empty_payload_is_refused():
    with pytest.raises(ValueError):
        render_png("")
    with pytest.raises(ValueError):
        render_svg("")


# ------------------------------------------------------------------ SVG

def test_svg_is_a_single_path_document_with_a_viewbox_that_scales_to_its_box():
    svg = render_svg(payment_uri(BECH32, 150_000, "해운대", for_qr=True))
    assert svg.startswith(b"<?xml")
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    assert root.get("viewBox")
    assert root.get("width") == "100%" and root.get("height") == "100%"
    assert "mm" not in (root.get("width") + root.get("height"))
    assert root.get("shape-rendering") == "crispEdges"
    rects = root.findall(SVG_NS + "rect")
    assert [r.get("fill") for r in rects] == ["white"]  # scans on a dark-mode page too
    [path] = root.findall(SVG_NS + "path")
    assert path.get("d").startswith("M") and path.get("fill") == "#000000"
    assert path.get("id") is None  # two QR codes on one page must not share an id


@pytest.mark.parametrize("label", LABELS)
def test_svg_rasterized_decodes_to_exactly_the_payment_uri(label):
    uri = payment_uri(BECH32, 150_000, label, for_qr=True)
    size, dark = _svg_modules(render_svg(uri))
    assert _decode_png(_rasterize(size, dark)) == [uri]


@pytest.mark.parametrize("label", LABELS[:3])
def test_svg_and_png_draw_the_same_modules(label):
    uri = payment_uri(BECH32, 150_000, label, for_qr=True)
    svg_size, svg_dark = _svg_modules(render_svg(uri))
    png_size, png_dark = _png_modules(render_png(uri, box_size=4), box_size=4)
    assert svg_size == png_size == build_qr(uri).modules_count + 8
    assert svg_dark == png_dark


# ------------------------------------------------------------------ size

def _version(payload: str) -> int:
    return build_qr(payload).version


@pytest.mark.parametrize("label", LABELS + [None])
@pytest.mark.parametrize("address", [BECH32, REGTEST])
def test_upper_case_bech32_payload_needs_no_bigger_a_qr_than_lower_case(address, label):
    upper = payment_uri(address, 150_000, label, for_qr=True)
    lower = payment_uri(address, 150_000, label, for_qr=False)
    assert upper != lower
    assert _version(upper) <= _version(lower)


def test_upper_case_bech32_saves_a_whole_qr_version_for_a_typical_invoice():
    # Measured: version 5 vs 6 at level M (37 vs 41 modules).
    upper = payment_uri(BECH32, 150_000, "Haeundae Coffee", for_qr=True)
    lower = payment_uri(BECH32, 150_000, "Haeundae Coffee")
    assert _version(upper) == 5
    assert _version(lower) == 6


def test_error_correction_is_level_m():
    qr = build_qr(payment_uri(BECH32, 1, for_qr=True))
    assert qr.error_correction == qrcode.constants.ERROR_CORRECT_M
    assert qr.border == 4

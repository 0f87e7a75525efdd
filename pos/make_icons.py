"""Draw the POS app icons (PWA manifest, home screen) with Pillow:
``.venv/bin/python -m pos.make_icons`` writes them into ``static/pos/``."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SEA = (11, 79, 156)
GOLD = (247, 147, 26)  # bitcoin orange
OUT = Path(__file__).resolve().parent.parent / "static" / "pos"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _font(size: int):
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def draw(size: int, *, maskable: bool = False) -> Image.Image:
    scale = 4  # draw large, shrink: smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), SEA + (255,) if maskable else (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if not maskable:
        pen.rounded_rectangle((0, 0, big - 1, big - 1), radius=big // 5, fill=SEA)
    # Maskable icons keep their content inside the central 80 % "safe zone".
    inset = big * (0.18 if maskable else 0.1)
    glyph = _font(int((big - 2 * inset) * 0.72))
    pen.text((big / 2, big / 2 - big * 0.02), "\u20a9", font=glyph, fill="white", anchor="mm")
    dot = big * (0.13 if maskable else 0.16)
    cx, cy = big - inset - dot, big - inset - dot
    pen.ellipse((cx - dot, cy - dot, cx + dot, cy + dot), fill=GOLD, outline="white",
                width=max(2, big // 80))
    pen.text((cx, cy), "B", font=_font(int(dot * 1.3)), fill="white", anchor="mm")
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    draw(192).save(OUT / "icon-192.png", optimize=True)
    draw(512).save(OUT / "icon-512.png", optimize=True)
    draw(512, maskable=True).save(OUT / "icon-maskable-512.png", optimize=True)
    draw(180, maskable=True).convert("RGB").save(OUT / "apple-touch-icon.png", optimize=True)


if __name__ == "__main__":
    main()

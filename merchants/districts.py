"""Busan's 16 districts: its 15 gu and Gijang-gun (slug, Korean name, English name)."""

DISTRICTS: dict[str, tuple[str, str]] = {
    "jung-gu": ("중구", "Jung-gu"),
    "seo-gu": ("서구", "Seo-gu"),
    "dong-gu": ("동구", "Dong-gu"),
    "yeongdo-gu": ("영도구", "Yeongdo-gu"),
    "busanjin-gu": ("부산진구", "Busanjin-gu"),
    "dongnae-gu": ("동래구", "Dongnae-gu"),
    "nam-gu": ("남구", "Nam-gu"),
    "buk-gu": ("북구", "Buk-gu"),
    "haeundae-gu": ("해운대구", "Haeundae-gu"),
    "saha-gu": ("사하구", "Saha-gu"),
    "geumjeong-gu": ("금정구", "Geumjeong-gu"),
    "gangseo-gu": ("강서구", "Gangseo-gu"),
    "yeonje-gu": ("연제구", "Yeonje-gu"),
    "suyeong-gu": ("수영구", "Suyeong-gu"),
    "sasang-gu": ("사상구", "Sasang-gu"),
    "gijang-gun": ("기장군", "Gijang-gun"),
}

CATEGORIES = ("retail", "food", "cafe", "lodging", "transport", "culture", "market", "services")


def normalize_district(value: str) -> str:
    """Accept the slug, the English or the Korean name, in any case."""
    text = value.strip().lower().replace(" ", "-")
    for slug, (korean, english) in DISTRICTS.items():
        if text in (slug, english.lower()) or value.strip() == korean:
            return slug
    raise ValueError(f"unknown district {value!r}: use one of {', '.join(DISTRICTS)}")

"""Every page of the dashboard, the back office, the POS and the front door, rendered in
Korean, Chinese and Japanese, shows no visible string that is still its English source.

A "visible string" is a text node, or an aria-label / alt / placeholder / data-t-* (the POS
script's words) attribute, outside <script>, <style>, <code> and translate="no". Proper nouns,
codes and data (store and people's names, district romanisations, BTC, CSV…) are allowed;
anything else equal on the English page and on the other language's page fails, and the
message names it so `make translations` + a translator can fix it.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from merchants.districts import DISTRICTS
from tests.integration.test_dashboard import login, login_cashier, with_dashboard

LANGS = ("ko", "zh", "ja")
# Names and codes read the same in every language.
PROPER = ["Busan Pay", "BTCPay Server", "Greenfield", "OpenAPI", "Bitcoin", "BTC", "KRW", "CSV",
          "PIN", "API", "URL", "HTTP", "HTTPS", "IP", "ID", "KST", "UTC", "AGPL-3.0-or-later",
          "Stripe", "JSON", "QR", "POS", "HMAC", "SHA-256", "mm", "sats", "sat", "bankfile",
          "demo-exchange", "English", "NH", "make start", "e.g.", "Asia/Seoul", "0-conf", "tx",
          "HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed", "BTCPay-Sig"]
ATTRS = ("aria-label", "alt", "placeholder")
SKIP_TAGS = {"script", "style", "code", "title"}


class Visible(HTMLParser):
    """Collects the visible strings of a page (see the module doc)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.strings: list[str] = []

    def _hidden(self) -> bool:
        return any(hidden for _tag, hidden in self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        hidden = tag in SKIP_TAGS or attrs.get("translate") == "no"
        if not hidden and not self._hidden():
            for name, value in attrs.items():
                if value and (name in ATTRS or name.startswith("data-t-")):
                    self.strings.append(" ".join(value.split()))
        if tag not in ("br", "img", "input", "meta", "link", "hr", "wbr", "source"):
            self.stack.append((tag, hidden))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        text = " ".join(data.split())
        if text and not self._hidden():
            self.strings.append(text)


def visible_strings(html: str) -> list[str]:
    parser = Visible()
    parser.feed(html)
    return parser.strings


def english_left(text: str, allowed: re.Pattern) -> bool:
    """Whether `text` still has an English word once names, codes and data are taken out."""
    rest = allowed.sub(" ", text)
    return bool(re.search(r"[A-Za-z]{2,}", rest))


@pytest.fixture
def db_url(sqlite_url):
    """The words do not depend on the database: SQLite is enough."""
    return sqlite_url


@pytest.fixture
def city(app):
    import demo_data
    from backoffice import init_backoffice
    from pos import init_pos

    with_dashboard(app)
    init_pos(app)
    init_backoffice(app)
    seeded = demo_data.seed(app.extensions["busanpay"], invoices=400, rng_seed=7)
    return seeded


def pages(app, city) -> dict[str, tuple]:
    """(client, path) per page, each client signed in as the person who uses it."""
    from merchants.models import Store
    from payments.models import Invoice

    gateway = app.extensions["busanpay"]
    store_id = city["merchantOwner"]["storeId"]
    with gateway.db.read() as s:
        invoice = s.execute(select(Invoice.id).where(Invoice.store_id == store_id,
                                                     Invoice.status == "Settled")).scalars().first()
        expired = s.execute(select(Invoice.id).where(Invoice.status == "Expired",
                                                     Invoice.additional_status == "PaidPartial")
                            ).scalars().first()
        assert s.get(Store, store_id) is not None
    admin, owner, cashier, anyone = (app.test_client() for _ in range(4))
    login(admin, city["cityAdmin"]["email"], city["cityAdmin"]["password"])
    login(owner, city["merchantOwner"]["email"], city["merchantOwner"]["password"])
    login_cashier(cashier, city["cashier"]["storeId"], city["cashier"]["pin"])
    listed = {
        "front door": (anyone, "/"), "404 page": (anyone, "/no/such/page"),
        "sign in": (anyone, "/login"), "POS sign in": (anyone, "/pos/login"),
        "POS offline": (anyone, "/pos/offline"),
        "POS register": (cashier, "/pos"), "POS today": (cashier, "/pos/today"),
        "POS invoices": (cashier, "/pos/invoices"),
        "POS exceptions": (cashier, "/pos/invoices?show=exceptions"),
        "POS receipt": (cashier, f"/pos/receipts/{invoice}"),
        "back office": (owner, "/merchant"), "settings": (owner, "/merchant/settings"),
        "staff": (owner, "/merchant/staff"), "API keys": (owner, "/merchant/api-keys"),
        "webhooks": (owner, "/merchant/webhooks"), "payouts": (owner, "/merchant/payouts"),
        "city overview": (admin, "/city"), "city merchants": (admin, "/city/merchants"),
        "city merchant": (admin, f"/city/merchants/{store_id}"),
        "city exceptions": (admin, "/city/exceptions"), "city exposure": (admin, "/city/exposure"),
        "city settlement": (admin, "/city/settlement"), "city audit": (admin, "/city/audit"),
        "city lightning": (admin, "/city/lightning"),
        "checkout": (anyone, f"/i/{expired}"),
    }
    if "refunds" in app.blueprints:
        listed["city refunds"] = (admin, "/city/refunds")
    return listed


def allowed_pattern(app) -> re.Pattern:
    from accounts.models import User
    from merchants.models import ApiKey, Store

    data = set(PROPER)
    with app.extensions["busanpay"].db.read() as s:
        for (name,) in s.execute(select(Store.name)):
            data.update(part.strip() for part in name.split(" · "))
        for email, display in s.execute(select(User.email, User.display_name)):
            data.update(x for x in (email, display) if x)
        data.update(label for (label,) in s.execute(select(ApiKey.label)) if label)
    for korean, english in DISTRICTS.values():
        data.add(english)
    words = sorted((re.escape(w) for w in data if w), key=len, reverse=True)
    # ids, addresses and transaction ids are data too
    words += [r"[A-Za-z0-9]{20,}", r"(?:bc|tb|bcrt)1[a-z0-9]{20,}", r"https?://\S+"]
    return re.compile(r"(?<![A-Za-z])(?:" + "|".join(words) + r")(?![A-Za-z])")


def test_no_page_shows_an_english_string_in_korean_chinese_or_japanese(app, city):
    allowed = allowed_pattern(app)
    untranslated: dict[str, set[str]] = {}
    for name, (client, path) in pages(app, city).items():
        sep = "&" if "?" in path else "?"
        english = client.get(f"{path}{sep}lang=en")
        assert english.status_code in (200, 404), (name, english.status_code)
        source = {s for s in visible_strings(english.get_data(as_text=True))
                  if english_left(s, allowed)}
        assert source, f"{name}: nothing visible in English?"
        for lang in LANGS:
            res = client.get(f"{path}{sep}lang={lang}")
            assert res.status_code == english.status_code, (name, lang)
            for text in visible_strings(res.get_data(as_text=True)):
                if text in source:
                    untranslated.setdefault(text, set()).add(f"{name} ({lang})")
    report = "\n".join(f"  {text!r}: {', '.join(sorted(where)[:4])}"
                       for text, where in sorted(untranslated.items()))
    assert not untranslated, f"{len(untranslated)} English strings on translated pages:\n{report}"


def test_the_checker_finds_an_english_string_and_lets_names_and_codes_pass():
    html = ('<main><h1>판매</h1><p>Still to pay</p><span translate="no">Haeundae</span>'
            '<code>abc</code><button aria-label="Delete">x</button><p>0.0001 BTC</p></main>')
    strings = visible_strings(html)
    assert "Still to pay" in strings and "Delete" in strings
    assert "Haeundae" not in strings and "abc" not in strings
    allowed = re.compile(r"(?<![A-Za-z])(?:BTC)(?![A-Za-z])")
    assert not english_left("0.0001 BTC", allowed) and english_left("Still to pay", allowed)

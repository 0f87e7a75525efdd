"""Languages of the web pages (Flask-Babel 4): Korean, English, Simplified Chinese, Japanese.

Choice for each request, first that applies:

1. ``?lang=`` in the URL (and it is remembered in a cookie for the next pages);
2. the cookie;
3. the best match in the browser's ``Accept-Language``;
4. a page-specific default a view sets with :func:`set_page_default` before rendering
   (the checkout page uses the invoice's ``checkout.defaultLanguage``);
5. Korean.

Catalogues live in ``translations/<lang>/LC_MESSAGES/messages.po`` (compiled to ``.mo``).
Extract with ``pybabel extract -F babel.cfg -o messages.pot .``, merge with
``pybabel update -i messages.pot -d translations`` and compile with
``pybabel compile -d translations``.
"""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, get_locale

# code → the language's own name (autonyms are not translated: a reader looks for their own).
LANGUAGES: dict[str, str] = {
    "ko": "한국어",
    "en": "English",
    "zh": "简体中文",
    "ja": "日本語",
}
DEFAULT_LANGUAGE = "ko"
COOKIE_NAME = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
# BCP 47 tags for <html lang>: our Chinese catalogue is Simplified Chinese.
HTML_LANG = {"ko": "ko", "en": "en", "zh": "zh-Hans", "ja": "ja"}
DISPLAY_TIMEZONE = "Asia/Seoul"


def normalize(raw: str | None) -> str | None:
    """'ZH-cn', 'ja_JP', 'en' → a code we have a catalogue for, else None."""
    if not raw or not isinstance(raw, str):
        return None
    base = raw.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


def set_page_default(language: str | None) -> None:
    """A view's own fallback (step 4), set before anything is translated in the request."""
    g.page_default_language = normalize(language)


def select_language() -> str:
    if not has_request_context():
        return DEFAULT_LANGUAGE
    chosen = normalize(request.args.get("lang")) or normalize(request.cookies.get(COOKIE_NAME))
    if chosen:
        return chosen
    best = request.accept_languages.best_match(list(LANGUAGES))
    if best:
        return best
    return getattr(g, "page_default_language", None) or DEFAULT_LANGUAGE


def current_language() -> str:
    locale = get_locale()
    return normalize(str(locale)) if locale else DEFAULT_LANGUAGE


def language_url(code: str) -> str:
    """This page in another language: the same path and query, with ``lang=code``."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [code]
    return request.path + "?" + urlencode(args, doseq=True)


def _remember_choice(response):
    """Keep an explicit ?lang= choice in a cookie (HTML pages only, not API answers)."""
    chosen = normalize(request.args.get("lang"))
    if chosen and response.mimetype == "text/html" and \
            request.cookies.get(COOKIE_NAME) != chosen:
        response.set_cookie(COOKIE_NAME, chosen, max_age=COOKIE_MAX_AGE, samesite="Lax",
                            httponly=True, secure=request.is_secure)
    return response


def init_babel(app: Flask) -> Babel:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", DISPLAY_TIMEZONE)
    babel = Babel(app, locale_selector=select_language)
    from state_words import greenfield_name, invoice_state, state_word

    app.jinja_env.globals.update(invoice_state=invoice_state, greenfield_name=greenfield_name,
                                 state_word=state_word)
    app.after_request(_remember_choice)

    @app.context_processor
    def _language_context():
        code = current_language()
        return {"LANGUAGES": LANGUAGES, "HTML_LANG": HTML_LANG, "current_language": code,
                "html_lang": HTML_LANG.get(code, code), "lang_url": language_url}

    return babel

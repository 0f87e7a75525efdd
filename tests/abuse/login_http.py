"""Real HTTP clients for the login abuse tests: a live server on 127.0.0.1, and browsers
that may connect from other loopback addresses (127.0.0.N) to play distinct clients."""
from __future__ import annotations

import re

import requests
from requests.adapters import HTTPAdapter

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class _FromAddress(HTTPAdapter):
    def __init__(self, source: str, **kwargs):
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Browser:
    """One browser (its own cookies) connecting from ``source`` (a 127.0.0.N address)."""

    def __init__(self, base: str, source: str = "127.0.0.1"):
        self.base = base
        self.http = requests.Session()
        self.http.mount("http://", _FromAddress(source))

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.http.post(self.base + path, allow_redirects=False, timeout=60, **kwargs)

    def csrf(self, path: str) -> str:
        return CSRF.search(self.get(path).text).group(1)

    def pin_login(self, store: str, pin: str, token: str | None = None,
                  **kwargs) -> requests.Response:
        token = token or self.csrf("/pos/login")
        return self.post("/pos/login?lang=en", data={"store": store, "pin": pin,
                                                     "csrf_token": token}, **kwargs)

    def password_login(self, email: str, password: str, token: str | None = None,
                       **kwargs) -> requests.Response:
        token = token or self.csrf("/login")
        return self.post("/login?lang=en", data={"email": email, "password": password,
                                                 "csrf_token": token}, **kwargs)

"""With BUSANPAY_SMTP_URL set, the owner's invitation is emailed through smtplib to a real
SMTP server (aiosmtpd on 127.0.0.1), and the link in the email works once."""
from __future__ import annotations

import re
import socket

import pytest
from sqlalchemy import select

from accounts.models import User
from accounts.service import create_user
from tests.integration.test_pos import ADMIN_PW, form_token, sign_in_with_email


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, envelope.rcpt_tos,
                                  envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def app_config(app_config, smtp_server):
    controller, _ = smtp_server
    return {**app_config,
            "smtp_url": f"smtp://127.0.0.1:{controller.port}?from=busanpay@busan.go.kr"}


def test_the_invitation_is_emailed_and_its_link_signs_the_owner_in(app, client, smtp_server):
    _, inbox = smtp_server
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
    sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
    res = client.post("/city/merchants/new", data={
        "csrf_token": form_token(client, "/city/merchants/new"), "name": "Songdo Skywalk Café",
        "district": "seo-gu", "category": "cafe", "email": "Cafe@Songdo.kr",
        "settlement_mode": "krw"})
    assert res.status_code == 200
    assert "also emailed" in res.get_data(as_text=True)
    [(sender, recipients, content)] = inbox.messages
    assert sender == "busanpay@busan.go.kr" and recipients == ["cafe@songdo.kr"]
    link = re.search(r"http://localhost/invite/([A-Za-z0-9_-]+)", content)
    assert link, content
    owner = app.test_client()
    assert owner.get(f"/invite/{link.group(1)}").status_code == 303
    res = owner.post("/invite", data={"csrf_token": form_token(owner, "/invite"),
                                      "password": "sea breeze at songdo", "password_again": "sea breeze at songdo"})
    assert res.status_code == 303
    with app.extensions["busanpay"].db.read() as s:
        assert s.execute(select(User.role).where(User.email == "cafe@songdo.kr")).scalar_one() == "owner"


def test_when_the_mail_server_is_down_the_admin_is_told_to_pass_the_link_on(app, client,
                                                                            smtp_server):
    gateway = app.extensions["busanpay"]
    gateway.settings = gateway.settings.with_overrides(
        {"smtp_url": f"smtp://127.0.0.1:{_free_port()}"})  # nobody listens there
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
    sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
    res = client.post("/city/merchants/new", data={
        "csrf_token": form_token(client, "/city/merchants/new"), "name": "Dadaepo Sunset Bar",
        "district": "saha-gu", "category": "food", "email": "bar@dadaepo.kr",
        "settlement_mode": "krw"})
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert "could not be sent" in html and "/invite/" in html
    assert smtp_server[1].messages == []

"""Demo seed additions: a few pending applications and one pending payout-account change,
so the city's queues are not empty in a demo (called by `demo_data.seed`)."""
from __future__ import annotations

from sqlalchemy import select

from accounts.models import User
from accounts.service import Actor
from onboarding.applications import ApplicationData, submit_application
from onboarding.brn import check_digit
from onboarding.payout_accounts import request_change

APPLICANTS = [
    ("광안리 서핑 스쿨", "Gwangalli Surf School", "suyeong-gu", "culture", "부산 수영구 광안해변로 219",
     "박서연", "010-2345-6789", 4_500_000),
    ("영도 흰여울 게스트하우스", "Huinnyeoul Guesthouse", "yeongdo-gu", "lodging",
     "부산 영도구 영선동4가 1044", "최지훈", "010-9876-5432", 12_000_000),
    ("서면 야시장 떡볶이", "Seomyeon Night Market Tteokbokki", "busanjin-gu", "market",
     "부산 부산진구 중앙대로 680번가길", "이하은", "051-802-1234", 1_800_000),
]


def _brn(rng) -> str:
    first = f"{rng.randint(100, 999)}{rng.randint(10, 99)}{rng.randint(0, 9999):04d}"
    return first + str(check_digit(first))


def seed_onboarding(gateway, rng, first_store_id: str, owner_email: str) -> dict:
    now = gateway.clock()
    made = 0
    with gateway.db.write() as session:
        for korean, english, district, category, address, contact, phone, volume in APPLICANTS:
            data = ApplicationData(
                name_ko=korean, name_en=english, brn=_brn(rng), district=district,
                category=category, address=address, contact_name=contact,
                email=f"{english.split()[0].lower()}-{rng.randint(1000, 9999)}@applicants.busanpay.example",
                phone=phone, monthly_volume_krw=volume, settlement_mode="krw", xpub="")
            made += submit_application(session, data, language="ko", ip="demo", now=now) is not None
        owner = session.execute(select(User).where(User.email == owner_email)).scalar_one()
        change = request_change(session, Actor(owner.id, owner.role, "demo"), first_store_id,
                                bank_name="BNK부산은행", bank_account="112-2024-0615-01",
                                account_holder="해운대 개인 계좌",
                                explanation="개인사업자: 대표 본인 명의 계좌입니다.", now=now)
    return {"pendingApplications": made, "pendingPayoutChange": change.id}

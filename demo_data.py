"""The demo city: `flask --app app demo seed [--if-empty]`.

Creates, in a few seconds on SQLite:

* merchants across all 16 districts of Busan and every category, with realistic Korean
  and English names, an owner, two cashiers, an API key and a payout bank account each;
* city staff: a city admin, a city auditor (read-only) and a treasury operator;
* a month of invoices (about 5,000 by default) in every state — New, Processing,
  Settled (some paid over, some settled on 0 confirmations, one with a deep-reorg
  incident), Expired (unpaid, paid partially, paid late), Invalid (double-spent, never
  confirmed, marked), Settled by a person — with their payments and outbox events.
  Rows are inserted directly but stay consistent: each invoice gets the next treasury
  index from ``payments.service.allocate_index`` and the address derived from the
  treasury key at that index; due sats come from ``payments.quoting.sats_due`` at a
  day-by-day demo KRW/BTC rate; the status is whatever ``payments.invoice_status.decide``
  says about the generated payments at each step;
* when the settlement tables exist: the ledger entries of those invoices (through
  ``settlement.rules``), one BTC sale a day (FX gains and losses), daily payouts (most
  paid, a few failed or returned for a person to look at) and refund claims in each state.

It returns (and the CLI prints) the logins it made, with passwords generated for this
seed and shown only here. Every demo owner shares the owner password printed here and
every store's cashiers the two PINs (demo convenience: they are hashed once).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import secrets
import time
from types import SimpleNamespace
from dataclasses import dataclass, field
import dataclasses
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlmodel import func, select
from werkzeug.security import generate_password_hash

from merchants.models import Store
from merchants.service import create_store, issue_api_key, random_id

SEOUL = ZoneInfo("Asia/Seoul")

# (Korean name, English name, district, category, speed policy)
MERCHANTS = [
    ("해운대 모래알 카페", "Haeundae Sand Café", "haeundae-gu", "cafe", "HighSpeed"),
    ("해운대 암소갈비", "Haeundae Galbi House", "haeundae-gu", "food", "MediumSpeed"),
    ("마린시티 서핑숍", "Marine City Surf Shop", "haeundae-gu", "retail", "MediumSpeed"),
    ("해운대 오션 게스트하우스", "Haeundae Ocean Guesthouse", "haeundae-gu", "lodging", "LowMediumSpeed"),
    ("광안리 밀면", "Gwangalli Milmyeon", "suyeong-gu", "food", "HighSpeed"),
    ("광안대교 뷰 카페", "Diamond Bridge View Café", "suyeong-gu", "cafe", "HighSpeed"),
    ("민락 수변 회센터", "Millak Waterside Fish Market", "suyeong-gu", "market", "MediumSpeed"),
    ("자갈치 시장 12호", "Jagalchi Market Stall 12", "jung-gu", "market", "HighSpeed"),
    ("BIFF 광장 씨앗호떡", "BIFF Square Seed Hotteok", "jung-gu", "food", "HighSpeed"),
    ("국제시장 한복집", "Gukje Market Hanbok", "jung-gu", "retail", "MediumSpeed"),
    ("용두산 공원 기념품", "Yongdusan Park Souvenirs", "jung-gu", "retail", "HighSpeed"),
    ("송도 해상케이블카", "Songdo Marine Cable Car", "seo-gu", "transport", "MediumSpeed"),
    ("충무동 돼지국밥", "Chungmu-dong Dwaeji Gukbap", "seo-gu", "food", "HighSpeed"),
    ("암남공원 캠핑장", "Amnam Park Campsite", "seo-gu", "lodging", "MediumSpeed"),
    ("초량 이바구길 카페", "Choryang Ibagu-gil Café", "dong-gu", "cafe", "HighSpeed"),
    ("부산역 여행 안내소", "Busan Station Travel Desk", "dong-gu", "services", "MediumSpeed"),
    ("차이나타운 만두", "Chinatown Dumplings", "dong-gu", "food", "HighSpeed"),
    ("흰여울 문화마을 공방", "Huinnyeoul Village Craft Studio", "yeongdo-gu", "culture", "MediumSpeed"),
    ("태종대 유람선", "Taejongdae Cruise", "yeongdo-gu", "transport", "MediumSpeed"),
    ("영도 커피 로스터스", "Yeongdo Coffee Roasters", "yeongdo-gu", "cafe", "HighSpeed"),
    ("서면 떡볶이 골목", "Seomyeon Tteokbokki Alley", "busanjin-gu", "food", "HighSpeed"),
    ("전포 카페거리 로스터리", "Jeonpo Café Street Roastery", "busanjin-gu", "cafe", "HighSpeed"),
    ("서면 지하상가 패션", "Seomyeon Underground Fashion", "busanjin-gu", "retail", "MediumSpeed"),
    ("부전시장 청과", "Bujeon Market Fruit", "busanjin-gu", "market", "HighSpeed"),
    ("동래 할매파전", "Dongnae Halmae Pajeon", "dongnae-gu", "food", "MediumSpeed"),
    ("허심청 온천", "Heosimcheong Hot Spring", "dongnae-gu", "services", "MediumSpeed"),
    ("동래읍성 역사관", "Dongnae Fortress History Hall", "dongnae-gu", "culture", "MediumSpeed"),
    ("이기대 트레킹 가이드", "Igidae Trekking Guides", "nam-gu", "services", "MediumSpeed"),
    ("유엔공원 꽃집", "UN Park Florist", "nam-gu", "retail", "HighSpeed"),
    ("경성대 앞 분식", "Kyungsung Snack Bar", "nam-gu", "food", "HighSpeed"),
    ("구포시장 국수", "Gupo Market Noodles", "buk-gu", "market", "HighSpeed"),
    ("화명 생태공원 자전거", "Hwamyeong Park Bike Rental", "buk-gu", "transport", "HighSpeed"),
    ("감천문화마을 갤러리", "Gamcheon Culture Village Gallery", "saha-gu", "culture", "MediumSpeed"),
    ("다대포 노을 카페", "Dadaepo Sunset Café", "saha-gu", "cafe", "HighSpeed"),
    ("범어사 템플스테이", "Beomeosa Templestay", "geumjeong-gu", "lodging", "LowMediumSpeed"),
    ("부산대 앞 책방", "PNU Corner Bookshop", "geumjeong-gu", "retail", "MediumSpeed"),
    ("금정산성 막걸리", "Geumjeong Fortress Makgeolli", "geumjeong-gu", "food", "MediumSpeed"),
    ("김해공항 여행자 라운지", "Gimhae Airport Traveller Lounge", "gangseo-gu", "services", "MediumSpeed"),
    ("가덕도 대구탕", "Gadeokdo Cod Soup", "gangseo-gu", "food", "MediumSpeed"),
    ("연산 한의원", "Yeonsan Korean Medicine Clinic", "yeonje-gu", "services", "LowSpeed"),
    ("시청 앞 카페", "City Hall Plaza Café", "yeonje-gu", "cafe", "HighSpeed"),
    ("사상 터미널 매점", "Sasang Terminal Kiosk", "sasang-gu", "transport", "HighSpeed"),
    ("삼락 생태공원 피크닉", "Samnak Park Picnic Rentals", "sasang-gu", "services", "MediumSpeed"),
    ("기장 대게", "Gijang Snow Crab", "gijang-gun", "food", "MediumSpeed"),
    ("해동용궁사 기념품", "Haedong Yonggungsa Gifts", "gijang-gun", "retail", "HighSpeed"),
    ("일광 해변 펜션", "Ilgwang Beach Pension", "gijang-gun", "lodging", "LowMediumSpeed"),
    ("기장시장 멸치", "Gijang Market Anchovies", "gijang-gun", "market", "HighSpeed"),
]

# Won price ranges by category: (lowest, highest, rounding step); drawn log-uniformly.
PRICES = {
    "cafe": (4_500, 16_000, 500), "food": (7_000, 65_000, 1_000),
    "market": (5_000, 160_000, 1_000), "retail": (8_000, 260_000, 1_000),
    "lodging": (60_000, 390_000, 5_000), "transport": (1_500, 38_000, 500),
    "culture": (3_000, 32_000, 1_000), "services": (10_000, 130_000, 1_000),
}
# Sales by Seoul hour (tourist days: late breakfast, lunch, afternoon, dinner).
HOURS = [0.3, 0.15, 0.05, 0.02, 0.02, 0.05, 0.2, 0.5, 1.0, 1.6, 2.2, 3.0, 4.2, 3.8, 3.0,
         2.8, 3.0, 3.6, 4.4, 4.6, 3.8, 2.6, 1.5, 0.7]
SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍"
GIVEN = ["민지", "서준", "지우", "하은", "도윤", "서연", "예준", "수아", "시우", "지아",
         "주원", "하린", "지호", "유나", "건우", "채원", "우진", "소율", "현우", "다은"]
BANKS = ["BNK부산은행", "KB국민은행", "신한은행", "NH농협은행", "우리은행", "하나은행"]
REFUND_ADDRESS_INDEX = 900_000  # payer wallets for refund demos: far beyond invoice indexes
BLOCK_SECONDS = 600


@dataclass
class DemoStore:
    id: str
    name: str
    district: str
    category: str
    speed_policy: str
    zero_conf_limit_krw: int
    tolerance: Decimal
    weight: float
    owner_email: str = ""
    api_key: str = ""
    pos_code: str = ""
    cashiers: list[str] = field(default_factory=list)


# What a demo sale was for (shown as its memo), in the shops' own language.
DEMO_ITEMS = {"retail": "기념품", "food": "돼지국밥 2인분", "cafe": "아메리카노 2잔",
              "lodging": "1박", "transport": "자전거 대여", "culture": "입장권",
              "market": "건어물", "services": "세탁"}


def seed(gateway, *, if_empty: bool = False, days: int = 30, invoices: int = 5_000,
         rng_seed: int | None = None) -> dict:
    started = time.perf_counter()
    with gateway.db.read() as session:
        existing = session.exec(select(func.count()).select_from(Store)).one()
    if existing and if_empty:
        return {"seeded": False, "reason": f"{existing} stores exist already"}
    rng = random.Random(rng_seed if rng_seed is not None else secrets.randbits(64))
    now = gateway.clock()
    secrets_out = _new_secrets()
    treasury_key_id = gateway.invoices.ensure_treasury_key()
    stores, people = _people_and_stores(gateway, rng, secrets_out)
    timings = {"people": time.perf_counter() - started}
    plans = _plan(rng, stores, now, days, invoices)
    summary = _insert_invoices(gateway, rng, stores, plans, now, treasury_key_id)
    timings["invoices"] = time.perf_counter() - started
    _fold_rollup(gateway)
    settlement = _settlement(gateway, rng, stores, summary, now, days)
    timings["settlement"] = time.perf_counter() - started
    from onboarding.demo import seed_onboarding

    onboarding = seed_onboarding(gateway, rng, stores[0].id, stores[0].owner_email)
    from accounts.service import Actor, audit

    with gateway.db.write() as session:
        audit(session, Actor(None, "system"), "demo.seeded", target="demo",
              stores=len(stores), invoices=summary["count"])
    first = stores[0]
    return {
        "seeded": True,
        "cityAdmin": {"email": people["city_admin"], "password": secrets_out["city_admin"]},
        "cityAuditor": {"email": people["city_auditor"], "password": secrets_out["city_auditor"]},
        "treasury": {"email": people["treasury"], "password": secrets_out["treasury"]},
        "merchantOwner": {"email": first.owner_email, "password": secrets_out["owner"],
                          "storeId": first.id},
        "cashier": {"storeCode": first.pos_code, "storeId": first.id, "pin": secrets_out["pin"]},
        "notes": "Passwords and PINs are made for this seed and shown only here. Every demo "
                 "owner signs in with the merchantOwner password; every store's first cashier "
                 "with the cashier PIN.",
        "stores": [{"storeId": s.id, "storeCode": s.pos_code, "name": s.name, "district": s.district,
                    "category": s.category, "ownerEmail": s.owner_email, "apiKey": s.api_key}
                   for s in stores],
        "invoices": summary["by_state"],
        "settlement": settlement,
        "onboarding": onboarding,
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


# -- people and stores ---------------------------------------------------------------------

def _new_secrets() -> dict:
    pins = set()
    while len(pins) < 2:
        pins.add(f"{secrets.randbelow(10**6):06d}")
    pin, pin2 = sorted(pins)
    return {"city_admin": secrets.token_urlsafe(12), "city_auditor": secrets.token_urlsafe(12),
            "treasury": secrets.token_urlsafe(12), "owner": secrets.token_urlsafe(12),
            "pin": pin, "pin2": pin2}


def _slug(english: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in english.replace("é", "e"))
    return "-".join(p for p in keep.split("-") if p)


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def _people_and_stores(gateway, rng, secrets_out) -> tuple[list[DemoStore], dict]:
    from accounts.models import User
    from accounts.service import create_user

    tag = secrets.token_hex(2)  # a second seed into the same database gets new emails
    people = {"city_admin": f"city-admin-{tag}@busanpay.example",
              "city_auditor": f"city-auditor-{tag}@busanpay.example",
              "treasury": f"treasury-{tag}@busanpay.example"}
    owner_hash = generate_password_hash(secrets_out["owner"])
    pin_hashes = [generate_password_hash(secrets_out["pin"]), generate_password_hash(secrets_out["pin2"])]
    limit = gateway.settings.zero_conf_limit_krw
    stores: list[DemoStore] = []
    with gateway.db.write() as session:
        create_user(session, role="city_admin", email=people["city_admin"],
                    password=secrets_out["city_admin"], display_name="부산시 디지털경제과 관리자")
        create_user(session, role="city_auditor", email=people["city_auditor"],
                    password=secrets_out["city_auditor"], display_name="부산시 감사관")
        create_user(session, role="treasury", email=people["treasury"],
                    password=secrets_out["treasury"], display_name="부산시 재무 담당")
        for korean, english, district, category, speed in MERCHANTS:
            name = f"{korean} · {english}"
            zero_conf = rng.choice((30_000, 50_000)) if speed == "HighSpeed" else 0
            tolerance = rng.choice((Decimal("0"), Decimal("0"), Decimal("1")))
            store = create_store(session, name=name, district=district, category=category,
                                 speed_policy=speed, zero_conf_limit_krw=min(zero_conf, limit) if limit else zero_conf,
                                 payment_tolerance=tolerance,
                                 default_language="ko")
            demo = DemoStore(store.id, name, district, category, speed, store.zero_conf_limit_krw,
                             tolerance, weight=rng.lognormvariate(0, 0.7))
            demo.pos_code = store.pos_code
            demo.api_key = issue_api_key(session, store.id, label="demo").token
            demo.owner_email = f"owner.{_slug(english)}-{tag}@merchants.busanpay.example"
            session.add(User(id=random_id(20), role="owner", email=demo.owner_email,
                             password_hash=owner_hash, store_id=store.id,
                             display_name=_person(rng), language="ko"))
            first, second = _person(rng), _person(rng)
            while second == first:
                second = _person(rng)
            for label, pin_hash in ((first, pin_hashes[0]), (second, pin_hashes[1])):
                session.add(User(id=random_id(20), role="cashier", store_id=store.id,
                                 pin_hash=pin_hash, pin_label=label, display_name=label,
                                 language="ko"))
                demo.cashiers.append(label)
            stores.append(demo)
        # Haeundae first: the printed owner/cashier logins are for a busy beach café.
        stores[0].weight = max(stores[0].weight, 2.5)
    return stores, people


# -- the invoices ---------------------------------------------------------------------------

@dataclass
class Plan:
    store: DemoStore
    created_at: datetime
    amount_krw: int
    outcome: str


def _day_rate(rng: random.Random, days: int) -> list[Decimal]:
    """A KRW/BTC random walk, one closing rate per day (oldest first)."""
    rate = 150_000_000 * rng.uniform(0.96, 1.04)
    out = []
    for _ in range(days + 1):
        rate *= math.exp(rng.gauss(0.0008, 0.018))
        out.append(Decimal(int(rate // 1000 * 1000)))
    return out


def _price(rng: random.Random, category: str) -> int:
    low, high, step = PRICES[category]
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return max(step, int(round(value / step)) * step)


def _outcome(rng: random.Random, store: DemoStore, age: timedelta, amount: int) -> str:
    minutes = age.total_seconds() / 60
    zero_conf = store.speed_policy == "HighSpeed" and amount <= store.zero_conf_limit_krw
    if minutes < 15:
        return rng.choices(["new", "new-partial", "paying"], [0.55, 0.1, 0.35])[0]
    if minutes < 60 and rng.random() < 0.5:
        return "processing"
    roll = rng.random()
    for outcome, share in (("settled", 0.79), ("expired", 0.12), ("partial", 0.022),
                           ("late", 0.012), ("over", 0.018), ("settled-split", 0.018),
                           ("double-spent", 0.005), ("never-confirmed", 0.004),
                           ("marked-settled", 0.004), ("marked-invalid", 0.002)):
        if roll < share:
            if zero_conf and outcome in ("double-spent", "never-confirmed"):
                return "expired"  # a 0-conf sale is settled at once: keep incidents rare
            return outcome
        roll -= share
    return "settled"


def _plan(rng, stores, now, days, total) -> list[Plan]:
    today = now.astimezone(SEOUL).date()
    first_day = today - timedelta(days=days - 1)
    weights = [s.weight for s in stores]
    day_weights = []
    for i in range(days):
        day = first_day + timedelta(days=i)
        trend = 0.85 + 0.3 * i / max(1, days - 1)
        weekend = 1.35 if day.weekday() >= 5 else 1.0
        day_weights.append(trend * weekend * rng.uniform(0.9, 1.1))
    scale = total / sum(day_weights)
    plans = []
    for i, weight in enumerate(day_weights):
        day = first_day + timedelta(days=i)
        count = max(0, int(round(rng.gauss(weight * scale, math.sqrt(weight * scale)))))
        for _ in range(count):
            hour = rng.choices(range(24), HOURS)[0]
            local = datetime(day.year, day.month, day.day, hour, rng.randrange(60),
                             rng.randrange(60), tzinfo=SEOUL)
            created = local.astimezone(timezone.utc)
            if created >= now:
                continue
            store = rng.choices(stores, weights)[0]
            amount = _price(rng, store.category)
            plans.append(Plan(store, created, amount, _outcome(rng, store, now - created, amount)))
    plans.sort(key=lambda p: p.created_at)
    _add_showcase(rng, stores, plans, now)
    return plans


def _add_showcase(rng, stores, plans, now) -> None:
    """States a month of chance may miss: deep-reorg incidents, open 0-conf exposure."""
    settled = [p for p in plans if p.outcome == "settled" and now - p.created_at > timedelta(days=2)]
    for plan in rng.sample(settled, min(2, len(settled))):
        plan.outcome = "deep-reorg"
    fast = [s for s in stores if s.speed_policy == "HighSpeed" and s.zero_conf_limit_krw]
    for i, store in enumerate(fast[:4]):
        created = now - timedelta(minutes=3 + 4 * i)
        small = min(store.zero_conf_limit_krw, 4_500 + 1_000 * rng.randrange(20))
        plans.append(Plan(store, created, small, "zero-conf-settled"))
        plans.append(Plan(store, created - timedelta(minutes=2),
                          store.zero_conf_limit_krw + 5_000 * (1 + rng.randrange(30)), "processing"))
    for i, outcome in enumerate(("new", "new", "new-partial")):
        store = stores[i * 7 % len(stores)]
        plans.append(Plan(store, now - timedelta(minutes=1 + 3 * i), _price(rng, store.category), outcome))


def _height(moment: datetime, origin: datetime) -> int:
    return 800 + int((moment - origin).total_seconds() // BLOCK_SECONDS)


def _insert_invoices(gateway, rng, stores, plans, now, treasury_key_id) -> dict:
    from payments.invoice_json import event_payload
    from payments.invoice_status import InvoiceFacts, PaymentFact, apply, decide
    from payments.models import Invoice, InvoiceEvent, Payment
    from payments.quoting import sats_due
    from payments.service import allocate_index

    settings = gateway.settings
    origin = (plans[0].created_at if plans else now) - timedelta(days=1)
    tip = _height(now, origin)
    days = max(1, (now - origin).days + 1)
    rates = _day_rate(rng, days)
    invoices, payments, events = [], [], []
    by_state: dict[str, int] = {}
    settle_moments: dict[str, datetime] = {}
    with gateway.db.write() as session:
        key = gateway.invoices.keys.get(session, treasury_key_id)
        # Core connection of the same transaction: allocate_index's UPDATE … RETURNING
        # without the ORM's bulk-update bookkeeping (5,000 times).
        connection = session.connection()
        for plan in plans:
            store = plan.store
            day_index = min(len(rates) - 1, (plan.created_at - origin).days)
            rate = rates[day_index] * Decimal(str(round(1 + rng.gauss(0, 0.002), 5)))
            rate = Decimal(int(rate // 1000 * 1000))
            due = sats_due(plan.amount_krw, rate)
            index = allocate_index(connection, treasury_key_id)
            created = plan.created_at
            expires = created + timedelta(minutes=settings.expiration_minutes)
            monitoring = expires + timedelta(minutes=settings.monitoring_minutes)
            zero_conf = min(store.zero_conf_limit_krw, settings.zero_conf_limit_krw)
            speed = store.speed_policy
            facts = InvoiceFacts(status="New", additional_status="None", due_sats=due,
                                 amount_krw=plan.amount_krw, expires_at=expires,
                                 monitoring_expires_at=monitoring, speed_policy=speed,
                                 zero_conf_limit_krw=zero_conf, payment_tolerance=store.tolerance)
            invoice_id = random_id(22)
            address = key.address(index)
            pays, steps, incident, marked = _payments_for(rng, plan, due, created, expires,
                                                          monitoring, now, origin, tip)
            timeline = []
            decision = None
            for moment, view in steps:
                decision = decide(facts, view, moment)
                timeline += [(e, moment) for e in decision.events]
                facts = apply(facts, decision)
            status, additional = facts.status.value, facts.additional_status.value
            paid = decision.paid_sats if decision else 0
            incident = decision.incident if decision else None
            chain_status = None  # a mark changes the shop's status, the money follows this
            settled_sats = decision.settled_sats if decision else None
            if marked:
                chain_status = status
                status, additional = marked, "Marked"
                timeline.append(("InvoiceSettled" if marked == "Settled" else "InvoiceInvalid",
                                 min(now, expires + timedelta(hours=rng.randint(1, 20)))))
            metadata = {"orderId": None, "itemDesc": DEMO_ITEMS.get(store.category, ""),
                        "posData": {"source": "demo"}}
            row = {
                "id": invoice_id, "store_id": store.id, "currency": "KRW",
                "amount_text": str(plan.amount_krw), "amount_krw": plan.amount_krw,
                "due_sats": due, "rate": rate, "rate_raw": rate, "rate_source": "demo",
                "rate_fetched_at": created - timedelta(seconds=rng.randint(2, 40)),
                "key_id": treasury_key_id, "key_index": index, "address": address,
                "status": status, "additional_status": additional, "speed_policy": speed,
                "payment_tolerance": store.tolerance, "zero_conf_limit_krw": zero_conf,
                "paid_sats": paid, "created_at": created, "expires_at": expires,
                "monitoring_expires_at": monitoring,
                "updated_at": max([created] + [m for _, m in timeline]),
                "order_id": None, "metadata_json": json.dumps(metadata),
                "checkout_json": json.dumps({
                    "speedPolicy": speed, "paymentMethods": ["BTC"], "defaultPaymentMethod": "BTC",
                    "expirationMinutes": settings.expiration_minutes,
                    "monitoringMinutes": settings.monitoring_minutes,
                    "paymentTolerance": int(store.tolerance), "redirectURL": None,
                    "redirectAutomatically": False, "defaultLanguage": "ko"}),
                "incident": incident, "archived": False, "version": 1 + len(timeline),
                "chain_status": chain_status, "settled_sats": settled_sats,
            }
            invoices.append(row)
            shell = SimpleNamespace(id=invoice_id, store_id=store.id,
                                    metadata_json=row["metadata_json"])
            for p in pays:
                payments.append(dict(p, invoice_id=invoice_id, address=address))
            events.append(_event(event_payload, shell, "InvoiceCreated", created, "InvoiceCreated"))
            for p in pays:
                events.append(_event(event_payload, shell, "InvoiceReceivedPayment", p["seen_at"],
                                     f"paid:{p['txid']}:{p['vout']}"))
            for name, moment in timeline:
                events.append(_event(event_payload, shell, name, moment, f"{name}:{moment.timestamp()}"))
            if status == "Settled" or additional in ("PaidPartial", "PaidLate") or status == "Invalid":
                settle_moments[invoice_id] = max([created] + [m for _, m in timeline]
                                                 + [p["seen_at"] for p in pays])
            label = f"{status}/{additional}" + (f"/{incident}" if incident else "")
            by_state[label] = by_state.get(label, 0) + 1
        for chunk in _chunks(invoices, 1000):
            session.execute(insert(Invoice.__table__), chunk)
        for chunk in _chunks(payments, 2000):
            session.execute(insert(Payment.__table__), chunk)
        for chunk in _chunks(events, 2000):
            session.execute(insert(InvoiceEvent.__table__), chunk)
    return {"count": len(invoices), "by_state": dict(sorted(by_state.items())),
            "rates": rates, "origin": origin, "settle_moments": settle_moments,
            "ids": [r["id"] for r in invoices]}


def _event(event_payload, invoice, event_type, moment, dedupe) -> dict:
    return {"dedupe_key": f"{invoice.id}:{dedupe}", "invoice_id": invoice.id,
            "store_id": invoice.store_id, "event_type": event_type,
            "payload_json": json.dumps(event_payload(invoice, event_type, moment)),
            "created_at": moment}


def _txid(rng: random.Random) -> str:
    return "%064x" % rng.getrandbits(256)


def _payments_for(rng, plan, due, created, expires, monitoring, now, origin, tip):
    """Payments for the plan's outcome and the decision steps: [(moment, [PaymentFact])]."""
    from payments.invoice_status import PaymentFact

    outcome = plan.outcome
    rows: list[dict] = []
    marked = None
    incident = None

    def pay(value, seen, confirmed_after=None, state="seen"):
        height = None
        if confirmed_after is not None:
            height = _height(seen + confirmed_after, origin)
            if height > tip:
                height = None
        rows.append({"txid": _txid(rng), "vout": rng.randrange(2), "value_sats": value,
                     "state": state, "block_height": height,
                     "block_hash": hashlib.sha256(f"demo-block-{height}".encode()).hexdigest() if height else None,
                     "seen_at": seen, "late": seen > expires})

    def facts(at, states=None):
        out = []
        for i, r in enumerate(rows):
            if r["seen_at"] > at:
                continue
            state = (states or {}).get(i, r["state"])
            confs = 0 if r["block_height"] is None or state != "seen" else \
                max(0, _height(at, origin) - r["block_height"] + 1)
            out.append(PaymentFact(txid=r["txid"], vout=r["vout"], value_sats=r["value_sats"],
                                   confirmations=confs, state=state, seen_at=r["seen_at"]))
        return out

    soon = created + timedelta(seconds=rng.randint(25, 600))
    block_wait = timedelta(minutes=rng.randint(4, 25))
    if outcome in ("settled", "deep-reorg"):
        pay(due, soon, block_wait)
    elif outcome == "settled-split":
        first = due * rng.randint(30, 70) // 100
        pay(first, soon, block_wait)
        pay(due - first, min(expires, soon + timedelta(seconds=rng.randint(20, 240))), block_wait)
    elif outcome == "over":
        pay(due + due * rng.randint(1, 30) // 100, soon, block_wait)
    elif outcome == "partial":
        pay(due * rng.randint(30, 90) // 100, soon, block_wait)
    elif outcome == "late":
        pay(due, expires + timedelta(minutes=rng.randint(1, 180)), block_wait)
    elif outcome in ("double-spent",):
        pay(due, soon, None)
    elif outcome == "never-confirmed":
        pay(due, soon, None)
    elif outcome == "marked-settled":
        pay(due * rng.randint(85, 97) // 100, soon, block_wait)
        marked = "Settled"
    elif outcome == "marked-invalid":
        marked = "Invalid"
    elif outcome == "new-partial":
        pay(due * rng.randint(20, 60) // 100, min(now, soon), None)
    elif outcome == "paying":
        pay(due, min(now, soon), None)
    elif outcome in ("processing", "zero-conf-settled"):
        pay(due, min(now - timedelta(seconds=20), soon), None)
    # "new" and "expired": nothing paid
    steps = [(r["seen_at"], None) for r in rows]
    checkpoints = sorted({m for m, _ in steps} | {min(now, expires)}
                         | {r["seen_at"] + block_wait for r in rows if r["block_height"]})
    checkpoints = [m for m in checkpoints if m <= now] + [now]
    out = [(m, facts(m)) for m in checkpoints]
    if outcome == "double-spent" and rows:
        out.append((now, facts(now, {0: "double_spent"})))
        rows[0]["state"] = "double_spent"
    if outcome == "deep-reorg" and rows:
        rows[0]["state"] = "orphaned"
        rows[0]["block_height"], rows[0]["block_hash"] = None, None
        out.append((now, facts(now)))
    if outcome == "never-confirmed" and now < monitoring:
        # too young to have run out of monitoring time: it is simply processing
        pass
    return rows, out, incident, marked


# -- rollup, settlement ---------------------------------------------------------------------

def _fold_rollup(gateway) -> None:
    try:
        from dashboard.rollup import fold
    except ImportError:  # the dashboard package is optional for the seed
        return
    with gateway.db.write() as session:
        fold(session)


def _settlement_tables(gateway) -> bool:
    from sqlalchemy import inspect

    with gateway.db.read() as session:
        inspector = inspect(session.connection())
        return all(inspector.has_table(t) for t in
                   ("journal_entry", "posting", "ledger_account", "ledger_invoice", "payout",
                    "conversion", "refund_claim", "ledger_cursor", "merchant_payout_account"))


def _settlement(gateway, rng, stores, summary, now, days) -> dict:
    """Ledger, daily conversions, payouts and refund claims, when settlement is installed."""
    try:
        from settlement import daily, payouts as payout_ops, refunds, rules
        from settlement.conversion import unconverted
        from settlement.ledger import post, post_many
        from settlement.models import Conversion, LedgerCursor, LedgerInvoice, Payout
        from settlement.posting_job import CURSOR, fee_bps_for
    except ImportError as err:
        return {"available": False, "reason": f"settlement package not importable: {err}"}
    if not _settlement_tables(gateway):
        return {"available": False, "reason": "settlement tables are not in this database"}
    from payments.models import Invoice, InvoiceEvent

    today = now.astimezone(SEOUL).date()
    first_day = today - timedelta(days=days - 1)
    moments = summary["settle_moments"]
    fee_default = gateway.settings.fee_bps
    with gateway.db.write() as session:
        for store in stores:
            payout_ops.set_payout_account(session, store.id, bank_name=rng.choice(BANKS),
                                          bank_account=f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}-{rng.randint(100000, 999999)}",
                                          account_holder=store.name.split(" · ")[0])
    store_by_id = {s.id: s for s in stores}
    with gateway.db.read() as session:
        rows = list(session.scalars(select(Invoice).where(Invoice.id.in_(list(moments)))))
        fees = {c: fee_bps_for(session, c, fee_default) for c in {s.category for s in stores}}
    by_day: dict[date, list] = {}
    for inv in rows:
        by_day.setdefault(moments[inv.id].astimezone(SEOUL).date(), []).append(inv)
    posted = conversions = 0
    rates = summary["rates"]
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        entries, ledger_rows = [], []
        for inv in sorted(by_day.get(day, []), key=lambda i: moments[i.id]):
            store = store_by_id[inv.store_id]
            facts = rules.InvoiceFacts(
                invoice_id=inv.id, store_id=inv.store_id, settlement_mode="krw",
                status=inv.status, additional_status=inv.additional_status, incident=inv.incident,
                amount_krw=inv.amount_krw, due_sats=inv.due_sats, paid_sats=inv.paid_sats,
                rate=inv.rate, fee_bps=fees[store.category], chain_status=inv.chain_status,
                settled_sats=inv.settled_sats)
            entry = rules.invoice_entry(facts, {}, seq=0, moment=moments[inv.id])
            if entry is not None:
                entries.append(entry)
                ledger_rows.append({"invoice_id": inv.id, "store_id": inv.store_id,
                                    "fee_bps": fees[store.category], "entries": 1,
                                    "updated_at": moments[inv.id]})
        close = datetime(day.year, day.month, day.day, 23, 30, tzinfo=SEOUL).astimezone(timezone.utc)
        with gateway.db.write() as session:
            if entries:
                posted += len(post_many(session, entries))
                session.execute(insert(LedgerInvoice.__table__), ledger_rows)
            if close < now:  # the treasury sells the day's BTC at the close
                sats, locked = unconverted(session)
                if sats > 0:
                    rate = rates[min(len(rates) - 1, offset + 1)] * Decimal(str(round(1 + rng.gauss(0, 0.006), 5)))
                    executed = rules.krw_for_sats(sats, rate)
                    conv_id = random_id(24)
                    post(session, rules.venue_deposit_entry(conv_id, "demo-exchange", sats,
                                                            moment=close))
                    post(session, rules.conversion_entry(conv_id, sats, executed, locked, rate,
                                                         venue="demo-exchange", moment=close))
                    session.add(Conversion(id=conv_id, venue="demo-exchange", sats=sats, status="done",
                                           external_id=f"demo-{conv_id[:10]}", executed_krw=executed,
                                           rate=rate, locked_krw=locked, attempts=1,
                                           created_at=close, updated_at=close))
                    conversions += 1
        if day < today:
            _, end = daily.day_bounds(day)
            # Each payout is initiated just after its own day's cut-off, as the daily job
            # would have done, not at seeding time (today's ledger would list a month of them).
            at = min(end + timedelta(minutes=5), now)
            daily.create_payouts(dataclasses.replace(gateway, clock=lambda at=at: at), day,
                                 min(end, now))
    with gateway.db.write() as session:
        top = session.execute(select(func.max(InvoiceEvent.id))).scalar_one() or 0
        from database import upsert

        upsert(session, LedgerCursor.__table__, {"name": CURSOR, "value": int(top), "updated_at": now},
               key=["name"], update=["value", "updated_at"])
    states = _payout_states(gateway, rng, payout_ops, rules, post_many, Payout, today, now)
    claims = _refund_claims(gateway, rng, refunds, now)
    return {"available": True, "ledgerEntries": posted, "conversions": conversions,
            "payouts": states, "refundClaims": claims}


def _payout_states(gateway, rng, payout_ops, rules, post_many, Payout, today, now) -> dict:
    """Most payouts sent and confirmed paid; yesterday's still on their way; a few failed or
    returned for a person. Paid ones in bulk (the same entries `mark_paid` posts)."""
    from sqlalchemy import bindparam, update

    with gateway.db.read() as session:
        payouts = list(session.scalars(select(Payout).order_by(Payout.day, Payout.store_id)))
    yesterday = today - timedelta(days=1)
    failed = {p.id for p in rng.sample(payouts, min(3, len(payouts)))}
    returned = {p.id for p in rng.sample([p for p in payouts if p.id not in failed],
                                         min(1, max(0, len(payouts) - len(failed))))}

    def sent_at(p):
        moment = datetime(p.day.year, p.day.month, p.day.day, 9, 0, tzinfo=SEOUL) + timedelta(days=1)
        return min(moment.astimezone(timezone.utc), now)

    table = Payout.__table__
    sent_rows = [{"pid": p.id, "ext": f"bankfile:{p.day.isoformat()}", "at": sent_at(p)} for p in payouts]
    paid = [p for p in payouts if p.id not in failed and (p.day < yesterday or p.id in returned)]
    with gateway.db.write() as session:
        if sent_rows:
            session.execute(update(table).where(table.c.id == bindparam("pid"))
                            .values(status="sent", external_id=bindparam("ext"),
                                    updated_at=bindparam("at"), attempts=1), sent_rows)
        post_many(session, [rules.payout_paid_entry(p.id, p.store_id, p.amount_krw,
                                                    moment=sent_at(p) + timedelta(hours=2))
                            for p in paid])
        if paid:
            session.execute(update(table).where(table.c.id == bindparam("pid"))
                            .values(status="paid", updated_at=bindparam("at")),
                            [{"pid": p.id, "at": sent_at(p) + timedelta(hours=2)} for p in paid])
        reasons = ["bank rejected: account closed",
                   "bank rejected: name does not match the account holder",
                   "bank rejected: account frozen"]
        for p in payouts:
            if p.id in failed:
                payout_ops.mark_returned(session, p.id, sent_at(p) + timedelta(hours=3),
                                         reason=rng.choice(reasons))
            elif p.id in returned:
                payout_ops.mark_returned(session, p.id, sent_at(p) + timedelta(days=1),
                                         reason="returned by the receiving bank", status="returned")
    counts: dict[str, int] = {}
    with gateway.db.read() as session:
        for status, n in session.execute(select(Payout.status, func.count()).group_by(Payout.status)):
            counts[status] = int(n)
    return counts


def _refund_claims(gateway, rng, refunds, now) -> dict:
    from payments.addresses import ExtendedKey
    from payments.models import Invoice

    with gateway.db.read() as session:
        owed = list(session.scalars(select(Invoice.id).where(
            Invoice.additional_status.in_(("PaidPartial", "PaidLate")), Invoice.status == "Expired")
            .order_by(Invoice.created_at.desc()).limit(12)))
    payer = ExtendedKey.parse(gateway.settings.treasury_xpub, gateway.settings.network)
    counts: dict[str, int] = {}
    for i, invoice_id in enumerate(owed):
        target = ("open", "submitted", "approved", "sent")[i % 4]
        moment = now - timedelta(hours=rng.randint(2, 60))
        try:
            with gateway.db.write() as session:
                claim, token = refunds.open_claim(session, invoice_id, moment)
                if target != "open":
                    refunds.submit_address(session, token, payer.address(REFUND_ADDRESS_INDEX + i, 1),
                                           gateway.settings.network, moment + timedelta(minutes=30))
                if target in ("approved", "sent"):
                    refunds.approve(session, claim.id, "demo treasury", moment + timedelta(hours=1))
                if target == "sent":
                    refunds.record_sent(session, claim.id, _txid(rng), moment + timedelta(hours=2), 350)
            counts[target] = counts.get(target, 0) + 1
        except refunds.RefundError as err:
            counts.setdefault("skipped", 0)
            counts["skipped"] += 1
            counts.setdefault("reasons", [])
            if str(err) not in counts["reasons"]:
                counts["reasons"].append(str(err))
    return counts


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]

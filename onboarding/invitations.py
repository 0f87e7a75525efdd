"""Owner invitations: a one-time, expiring link whose token is stored only as a SHA-256
hash; redeeming it creates the owner's login (password rules of `accounts.service`).
No Flask here."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from accounts.models import User
from accounts.service import Actor, audit, create_user
from merchants.service import hash_token, random_id
from onboarding.models import Invitation


class InvitationInvalid(ValueError):
    """code: unknown | used | expired"""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once to the admin (and emailed), never stored


def create_invitation(session: Session, actor: Actor, store_id: str, email: str, *,
                      now: datetime, days: int = 7) -> IssuedInvitation:
    token = secrets.token_urlsafe(32)
    invitation = Invitation(id=random_id(20), token_hash=hash_token(token), store_id=store_id,
                            email=(email or "").strip().lower(), created_by=actor.id or "",
                            created_at=now, expires_at=now + timedelta(days=days))
    session.add(invitation)
    session.flush()
    audit(session, actor, "invitation.created", target=invitation.id, store_id=store_id,
          email=invitation.email, expires=invitation.expires_at)
    return IssuedInvitation(invitation, token)


def find_invitation(session: Session, token: str, now: datetime) -> Invitation:
    """The invitation a token opens, if still usable; else InvitationInvalid."""
    if not token or len(token) > 200:
        raise InvitationInvalid("unknown")
    invitation = session.execute(select(Invitation).where(
        Invitation.token_hash == hash_token(token))).scalar_one_or_none()
    if invitation is None:
        raise InvitationInvalid("unknown")
    if invitation.used_at is not None:
        raise InvitationInvalid("used")
    if invitation.expires_at <= now:
        raise InvitationInvalid("expired")
    return invitation


def redeem_invitation(session: Session, token: str, password: str, *, now: datetime,
                      ip: str = "", display_name: str = "") -> User:
    """Create the owner and spend the invitation, in the caller's transaction. The claim is
    one conditional UPDATE, so two tabs racing cannot both use it. Raises
    InvitationInvalid or accounts' AccountError (e.g. a weak password)."""
    invitation = find_invitation(session, token, now)
    claimed = session.execute(update(Invitation)
                              .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
                              .values(used_at=now)
                              .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        raise InvitationInvalid("used")
    user = create_user(session, role="owner", email=invitation.email, password=password,
                       store_id=invitation.store_id, display_name=display_name)
    session.execute(update(Invitation).where(Invitation.id == invitation.id)
                    .values(user_id=user.id).execution_options(synchronize_session=False))
    audit(session, Actor(user.id, user.role, ip), "invitation.redeemed", target=invitation.id,
          store_id=invitation.store_id)
    return user

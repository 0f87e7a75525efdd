"""The node's last known health and liquidity, stored by a background job so that the city
dashboard and the metrics never wait on the node (a hung node must not hang a page).

`check(gateway)` asks the node (`node_info()`, bounded by the client's timeout, never
raising) and stores the answer in the one `lightning_node_snapshot` row; `snapshot(db)`
reads it. The error kept is the client's own words, which never carry a credential (the
LND and CLN clients scrub them); it is cut to 300 characters.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, Column, String
from sqlmodel import Field, SQLModel

from database import UTCDateTime, insert_ignore, utc_now
from lightning.backend import NodeInfo

SNAPSHOT_ID = 1
#: Seconds between two checks of the node.
CHECK_SECONDS = 30.0
#: A check older than this no longer says the node is up (the job stopped).
STALE_SECONDS = 300


class LightningNodeSnapshot(SQLModel, table=True):
    """The node's answer to the last check (one row)."""

    __tablename__ = "lightning_node_snapshot"

    id: int = Field(default=SNAPSHOT_ID, primary_key=True)
    backend: str = Field(default="", max_length=16)
    reachable: bool = Field(default=False)
    alias: str = Field(default="", max_length=64)
    block_height: Optional[int] = Field(default=None)
    local_balance_msat: int = Field(default=0, sa_column=Column(
        "local_balance_msat", BigInteger(), nullable=False, server_default="0"))
    inbound_msat: int = Field(default=0, sa_column=Column(
        "inbound_msat", BigInteger(), nullable=False, server_default="0"))
    error: Optional[str] = Field(default=None, sa_column=Column("error", String(300),
                                                               nullable=True))
    checked_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "checked_at", UTCDateTime(), nullable=False))
    reachable_at: Optional[datetime] = Field(default=None, sa_column=Column(
        "reachable_at", UTCDateTime(), nullable=True))


@dataclass(frozen=True)
class NodeSnapshot:
    info: NodeInfo
    checked_at: datetime
    reachable_at: datetime | None  # the last check that reached it


def check(gateway) -> NodeInfo | None:
    """Ask the node once and store its answer; None when Lightning is off."""
    if gateway.lightning is None:
        return None
    info = gateway.lightning.node_info()
    now = gateway.clock()
    values = {"backend": info.backend[:16], "reachable": info.reachable,
              "alias": (info.alias or "")[:64], "block_height": info.block_height,
              "local_balance_msat": info.local_balance_msat if info.reachable else 0,
              "inbound_msat": info.inbound_msat if info.reachable else 0,
              "error": (info.error or None) and info.error[:300], "checked_at": now}
    with gateway.db.write() as s:
        if not insert_ignore(s, LightningNodeSnapshot.__table__,
                             {"id": SNAPSHOT_ID, **values,
                              "reachable_at": now if info.reachable else None},
                             conflict=["id"]):
            row = s.get(LightningNodeSnapshot, SNAPSHOT_ID)
            for key, value in values.items():
                setattr(row, key, value)
            if info.reachable:
                row.reachable_at = now
            s.add(row)
    return info


def snapshot(db) -> NodeSnapshot | None:
    """The stored answer of the last check, or None before the first one."""
    with db.read() as s:
        row = s.get(LightningNodeSnapshot, SNAPSHOT_ID)
    if row is None:
        return None
    info = NodeInfo(backend=row.backend, reachable=row.reachable, alias=row.alias,
                    block_height=row.block_height, local_balance_msat=row.local_balance_msat,
                    inbound_msat=row.inbound_msat, error=row.error)
    return NodeSnapshot(info, row.checked_at, row.reachable_at)

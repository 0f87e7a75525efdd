"""The baseline for bench_invoice_http.py: one INSERT per POST, in the same stack.

Flask 3 + SQLAlchemy 2 + psycopg 3 under the same gunicorn settings as the real app,
with the engine built by the app's own `database.make_engine` (same pool, pre-ping).
It parses the JSON body, checks the token header is present, inserts one row and
answers a small JSON object: the floor under any invoice-creation endpoint.

    DATABASE_URL=postgresql+psycopg://… gunicorn 'bench.bare_insert_app:create_app()'

The table is created by the benchmark (`TABLE_DDL`), not by the app's migrations.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from flask import Flask, jsonify, request
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from database import make_engine  # noqa: E402  (the app's engine settings)

TABLE = "bench_bare_insert"
TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id BIGSERIAL PRIMARY KEY,
    store_id VARCHAR(48) NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)"""
INSERT = text(f"INSERT INTO {TABLE} (store_id, body, created_at) "
              "VALUES (:store_id, :body, :created_at) RETURNING id")


def create_app() -> Flask:
    app = Flask(__name__)
    engine = make_engine(os.environ["DATABASE_URL"])

    @app.get("/health")
    def health():
        return jsonify({"ok": True})

    @app.post("/api/v1/stores/<store_id>/invoices")
    def create(store_id: str):
        if not request.headers.get("Authorization", "").startswith("token "):
            return jsonify({"code": "unauthenticated"}), 401
        body = request.get_json()
        with engine.begin() as conn:
            new_id = conn.execute(INSERT, {
                "store_id": store_id, "body": request.get_data(as_text=True),
                "created_at": datetime.now(timezone.utc)}).scalar_one()
        return jsonify({"id": new_id, "storeId": store_id, "amount": body.get("amount"),
                        "status": "New"})

    return app

"""Abuse: a bounded fuzz of the whole API from its own OpenAPI document (schemathesis).

Valid and invalid requests generated from `/api/v1/openapi.json` for every operation (NUL
bytes allowed), aimed at a real store, invoice and webhook with a real key, sent over WSGI
on SQLite and PostgreSQL: none may get a server error. A fixed number of derandomized
examples per operation and mode keeps the run to about a minute and the same on every run.
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from tests.abuse.test_inputs_json import shop  # noqa: F401 (fixture)
from tests.conftest import auth

EXAMPLES = 15
CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-x00": True}})


def test_no_generated_request_to_any_operation_gets_a_server_error(app, shop):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=CONFIG)
    # A key that revokes itself (DELETE /api-keys/current) would end the fuzz at 401.
    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if not (op.method.upper() == "DELETE" and op.path.endswith("/api-keys/current"))]
    assert len(operations) >= 15
    ids = {"storeId": shop["store"], "invoiceId": shop["invoice"], "webhookId": shop["webhook"]}
    failures, answered = [], set()
    for operation in operations:
        ours = {name: value for name, value in ids.items() if f"{{{name}}}" in operation.path}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(mode, path_parameters=ours or None))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def send(case):
                response = case.call(headers=auth(shop["token"]))
                answered.add(response.status_code)
                if response.status_code >= 500:
                    failures.append((case.method, case.formatted_path, case.query, case.body,
                                     response.status_code, response.text[:300]))

            try:
                send()
            except Unsatisfiable:
                # An operation with no input (e.g. GET /health) has no invalid request to
                # generate; its valid requests were sent in the POSITIVE mode.
                assert mode is GenerationMode.NEGATIVE, operation.path
    assert not failures, failures[:5]
    assert {200, 400, 404, 422} <= answered  # the fuzz reached past authentication

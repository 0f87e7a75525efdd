"""`/api-keys/authorize`: the page a shop plugin sends its owner to (Greenfield's flow).

GET shows which shop (its host, large) asks for what, and the owner's store; POST (CSRF,
owner role) approves or declines. On approval the key is created and the browser POSTs it
back to the shop's `redirect` with an auto-submitting form (`apiKey`, `userId`,
`permissions[]`), as BTCPay does. Thin edge over backoffice.shop_authorization.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, make_response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user

from accounts.web import require_roles
from backoffice.service import NotFound, Refused
from backoffice.shop_authorization import approve, owner_stores
from merchants.greenfield import AuthorizeRefused, parse_authorize_request
from merchants.service import ALL_PERMISSIONS

bp = Blueprint("authorize", __name__)


def _csp(form_action: str = "'self'") -> str:
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"base-uri 'none'; form-action {form_action}; frame-ancestors 'none'")


def _page(template: str, status: int = 200, form_action: str = "'self'", **context):
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "no-store"  # the approval page carries the new key
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = _csp(form_action)
    return response


def refusal_text(code: str, params: dict) -> str:
    texts = {
        "permissions.unknown": _("The shop asks for permissions Busan Pay does not offer: "
                                 "%(names)s.", names=params.get("names", "")),
        "permissions.none": _("The shop asks for no permission Busan Pay offers."),
        "redirect.invalid": _("The shop's return address is not a plain http or https web "
                              "address, so no key can be sent back to it."),
    }
    return texts.get(code, code)


def _texts() -> dict:
    from backoffice.web import permission_texts

    return permission_texts()


def _parsed():
    return parse_authorize_request(request.args.to_dict(flat=False), ALL_PERMISSIONS)


@bp.get("/api-keys/authorize")
@require_roles("owner")
def authorize():
    try:
        asked = _parsed()
    except AuthorizeRefused as refused:
        return _page("merchants/authorize_refused.html", 422,
                     reasons=[refusal_text(c, p) for c, p in refused.problems])
    with current_app.extensions["busanpay"].db.read() as session:
        stores = owner_stores(session, current_user.store_id)
    if not stores:
        abort(403)
    return _page("merchants/authorize.html", asked=asked, stores=stores,
                 permission_texts=_texts())


@bp.post("/api-keys/authorize")
@require_roles("owner")
def authorize_decide():
    try:
        asked = _parsed()
    except AuthorizeRefused as refused:
        return _page("merchants/authorize_refused.html", 422,
                     reasons=[refusal_text(c, p) for c, p in refused.problems])
    if request.form.get("decision") != "approve":
        return _page("merchants/authorize_refused.html", 200, declined=True, reasons=[])
    gateway = current_app.extensions["busanpay"]
    store_id = request.form.get("store_id") or ""
    try:
        with gateway.db.write() as session:
            if store_id not in {s.id for s in owner_stores(session, current_user.store_id)}:
                abort(403)
            issued = approve(session, store_id, asked, current_user.actor(),
                             allow_frame=request.form.get("allow_frame") == "1")
    except (NotFound, Refused):
        abort(403)
    permissions = [f"{name}:{store_id}" for name in asked.permissions]
    if asked.redirect is None:  # no shop to send it to: show it once, like the back office
        return _page("merchants/authorize_done.html", token=issued.token, asked=asked,
                     permissions=permissions)
    return _page("merchants/authorize_post.html", form_action=asked.shop_origin,
                 asked=asked, token=issued.token, user_id=current_user.id,
                 permissions=permissions)


def init_authorize_page(app) -> None:
    if "authorize" not in app.blueprints:
        app.register_blueprint(bp)

"""Login, logout and role checks for the people's screens (Flask-Login sessions)."""
from __future__ import annotations

import secrets
from functools import wraps
from urllib.parse import urlparse

from flask import (Blueprint, abort, current_app, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _, ngettext
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeTimedSerializer
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from accounts.models import CITY_ROLES, User
from accounts.service import (Actor, Attempt, LoggedIn, LoginPolicy, LoginRefused,
                              LoginThrottled, end_session, login_with_password, login_with_pin,
                              session_user)
from accounts.throttle import client_key
from merchants.models import Store
from ratelimits import limiter, login_limit

bp = Blueprint("accounts", __name__)
login_manager = LoginManager()

DEVICE_COOKIE = "busanpay_device"
DEVICE_MAX_AGE = 400 * 24 * 3600
DEVICE_PRINCIPALS = 8  # stores/accounts one device remembers
# Which login page a stranger is sent to, by the area they asked for.
AREA_LOGIN = {"/pos": "accounts.pos_login"}


class SessionUser(UserMixin):
    """The logged-in person as the request sees them (a detached copy of the row)."""

    def __init__(self, user: User, session_id: str):
        self.id = user.id
        self.session_id = session_id
        self.role = user.role
        self.store_id = user.store_id
        self.display_name = user.display_name or user.email or user.pin_label or user.id
        self.email = user.email
        self.language = user.language

    def get_id(self) -> str:
        return self.session_id  # what Flask-Login keeps in the cookie

    @property
    def is_city(self) -> bool:
        return self.role in CITY_ROLES

    def actor(self) -> Actor:
        return Actor(self.id, self.role, request.remote_addr or "")


@login_manager.user_loader
def _load_user(session_id: str):
    """The session cookie names a server-side session; an ended one opens nothing."""
    gateway = current_app.extensions["busanpay"]
    with gateway.db.read() as s:
        user = session_user(s, session_id)
    if user is None:
        return None
    return SessionUser(user, session_id)


@login_manager.unauthorized_handler
def _unauthorized():
    target = "accounts.login"
    for prefix, endpoint in AREA_LOGIN.items():
        if request.path.startswith(prefix):
            target = endpoint
    return redirect(url_for(target, next=request.full_path.rstrip("?")))


def require_roles(*roles: str):
    """Logged in (else redirect to the right login) and holding one of `roles` (else 403)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _safe_next(default: str) -> str:
    target = request.args.get("next") or ""
    parsed = urlparse(target)
    if target.startswith("/") and not target.startswith("//") and not parsed.netloc:
        return target
    return default


def home_for(user) -> str:
    if user.role == "cashier":
        return url_for("pos.home") if "pos.home" in current_app.view_functions else "/pos"
    if user.role == "owner":
        return "/merchant"
    return "/city"


class PasswordLoginForm(FlaskForm):
    email = EmailField("email", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=200)])


class PinLoginForm(FlaskForm):
    store = StringField("store", validators=[DataRequired(), Length(max=48)])
    pin = PasswordField("pin", validators=[DataRequired(), Length(min=4, max=8)])


def client_limit_key() -> str:
    """Login rate limits key on the client's address only (an IPv6 client by its /64),
    never on a header the client chooses."""
    return client_key(request.remote_addr or "")


def _policy() -> LoginPolicy:
    settings = current_app.extensions["busanpay"].settings
    return LoginPolicy(free_per_client=settings.login_free_per_client,
                       free_per_account=settings.login_free_per_account)


def _device_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="busanpay.device")


def _device() -> dict:
    """The device cookie, when we signed it: {"d": id, "k": [principals], "pos": code}."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 2000:
        return {}
    try:
        data = _device_serializer().loads(raw, max_age=DEVICE_MAX_AGE)
    except BadSignature:
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("d"), str) else {}


def _attempt() -> Attempt:
    device = _device()
    known = frozenset(k for k in device.get("k", []) if isinstance(k, str))
    return Attempt(client=request.remote_addr or "", device=device.get("d"), known=known)


def _remember_device(response, principal: str, pos_code: str | None = None) -> None:
    """The browser becomes a known device for this store/account (a second factor that
    only a signed-in person can get): throttling of unknown devices no longer touches it."""
    device = _device()
    known = [k for k in device.get("k", []) if isinstance(k, str) and k != principal]
    data = {"d": device.get("d") or secrets.token_urlsafe(16),
            "k": (known + [principal])[-DEVICE_PRINCIPALS:]}
    pos = pos_code or device.get("pos")
    if pos:
        data["pos"] = pos
    response.set_cookie(DEVICE_COOKIE, _device_serializer().dumps(data), max_age=DEVICE_MAX_AGE,
                        httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", False))


def _end_current_session() -> None:
    if current_user.is_authenticated:
        gateway = current_app.extensions["busanpay"]
        with gateway.db.write() as s:  # ends it for every copy of the cookie
            end_session(s, current_user.session_id, gateway.clock())


def _login(logged_in: LoggedIn) -> None:
    _end_current_session()  # signing in over another session replaces it
    session.clear()  # a fresh session on login: no fixation
    login_user(SessionUser(logged_in.user, logged_in.session_id))


def _refusal(refused: LoginRefused, wrong: str) -> tuple[str, int, dict]:
    """The words and status for a refused login; never which part was wrong."""
    if isinstance(refused, LoginThrottled):
        minutes = (refused.retry_after + 59) // 60
        return (ngettext("Too many attempts. Try again in %(num)d minute.",
                         "Too many attempts. Try again in %(num)d minutes.", minutes),
                429, {"Retry-After": str(refused.retry_after)})
    if refused.reason == "disabled":
        return _("This account is disabled. Ask the store owner or the city to enable it."), 401, {}
    return wrong, 401, {}


def _login_page(form, template: str, check, credentials, texts: tuple[str, str], home):
    """One sign-in form: check (throttled), start the session, remember the device.
    ``texts`` = (wrong credentials, form incomplete); ``home(logged_in)`` → (next, POS code)."""
    error, status, headers = None, 200, {}
    if form.validate_on_submit():
        gateway = current_app.extensions["busanpay"]
        try:
            logged_in = check(gateway.db, *credentials(), _attempt(), gateway.clock(), _policy())
        except LoginRefused as refused:
            error, status, headers = _refusal(refused, texts[0])
        else:
            _login(logged_in)
            target, pos_code = home(logged_in)
            response = redirect(_safe_next(target))
            _remember_device(response, logged_in.principal, pos_code)
            return response
    elif request.method == "POST":
        error, status = texts[1], 401
    return render_template(template, form=form, error=error), status, headers


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, key_func=client_limit_key, methods=["POST"],
               error_message="Too many login attempts")
def login():
    form = PasswordLoginForm()
    return _login_page(form, "accounts/login.html", login_with_password,
                       lambda: (form.email.data, form.password.data),
                       (_("Wrong email or password."), _("Enter your email and password.")),
                       lambda done: (home_for(done.user), None))


@bp.route("/pos/login", methods=["GET", "POST"])
@limiter.limit(login_limit, key_func=client_limit_key, methods=["POST"],
               error_message="Too many login attempts")
def pos_login():
    form = PinLoginForm()
    if request.method == "GET" and not form.store.data:
        # The tablet remembers its store, so the cashier only types the PIN next time.
        form.store.data = _device().get("pos", "")
    return _login_page(form, "accounts/pos_login.html", login_with_pin,
                       lambda: (form.store.data, form.pin.data),
                       (_("Wrong store code or PIN."),
                        _("Enter the store code and a PIN of 4 to 8 digits.")),
                       lambda done: ("/pos", _store_code(done.user.store_id)))


def _store_code(store_id: str | None) -> str | None:
    if not store_id:
        return None
    with current_app.extensions["busanpay"].db.read() as s:
        store = s.get(Store, store_id)
    return store.pos_code if store else None


@bp.post("/logout")
def logout():
    target = "/pos/login" if current_user.is_authenticated and current_user.role == "cashier" else "/login"
    _end_current_session()
    logout_user()
    session.clear()
    return redirect(target)


def init_accounts(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)

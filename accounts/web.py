"""Login, logout and role checks for the people's screens (Flask-Login sessions)."""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlparse

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from accounts.models import CITY_ROLES, User
from accounts.service import Actor, LoginRefused, audit, login_with_password, login_with_pin
from ratelimits import limiter, login_limit

bp = Blueprint("accounts", __name__)
login_manager = LoginManager()

# Which login page a stranger is sent to, by the area they asked for.
AREA_LOGIN = {"/pos": "accounts.pos_login"}


class SessionUser(UserMixin):
    """The logged-in person as the request sees them (a detached copy of the row)."""

    def __init__(self, user: User):
        self.id = user.id
        self.role = user.role
        self.store_id = user.store_id
        self.display_name = user.display_name or user.email or user.pin_label or user.id
        self.email = user.email
        self.language = user.language

    @property
    def is_city(self) -> bool:
        return self.role in CITY_ROLES

    def actor(self) -> Actor:
        return Actor(self.id, self.role, request.remote_addr or "")


@login_manager.user_loader
def _load_user(user_id: str):
    gateway = current_app.extensions["busanpay"]
    with gateway.db.read() as s:
        user = s.get(User, user_id)
    if user is None or user.disabled:
        return None
    return SessionUser(user)


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


def _login(user: User, how: str) -> None:
    session.clear()  # a fresh session on login: no fixation
    login_user(SessionUser(user))
    gateway = current_app.extensions["busanpay"]
    with gateway.db.write() as s:
        audit(s, Actor(user.id, user.role, request.remote_addr or ""), "login", target=how,
              store_id=user.store_id)


def _check_credentials(check, *credentials) -> tuple[User | None, str | None]:
    """Run a credential check in a transaction that commits failures too (they drive the
    lock-out); the user, or the refusal to show."""
    gateway = current_app.extensions["busanpay"]
    with gateway.db.write() as s:
        try:
            user = check(s, *credentials, gateway.clock())
        except LoginRefused as refused:
            return None, str(refused)
        s.flush()
        s.expunge(user)
        return user, None


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"], error_message="Too many login attempts")
def login():
    form = PasswordLoginForm()
    error = None
    if form.validate_on_submit():
        user, error = _check_credentials(login_with_password, form.email.data, form.password.data)
        if user is not None:
            if user.role == "cashier":
                error = _("Cashiers sign in on the POS with their store and PIN.")
            else:
                _login(user, "password")
                return redirect(_safe_next(home_for(user)))
    elif request.method == "POST":
        error = _("Enter your email and password.")
    return render_template("accounts/login.html", form=form, error=error), (401 if error else 200)


@bp.route("/pos/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"], error_message="Too many login attempts")
def pos_login():
    form = PinLoginForm()
    if request.method == "GET" and not form.store.data:
        form.store.data = request.cookies.get("pos_store", "")
    error = None
    if form.validate_on_submit():
        user, error = _check_credentials(login_with_pin, form.store.data, form.pin.data)
        if user is not None:
            _login(user, "pin")
            response = redirect(_safe_next("/pos"))
            # The tablet remembers its store, so the cashier only types the PIN next time.
            response.set_cookie("pos_store", user.store_id, max_age=365 * 24 * 3600,
                                httponly=True, samesite="Lax")
            return response
    elif request.method == "POST":
        error = _("Enter the store code and a PIN of 4 to 8 digits.")
    return render_template("accounts/pos_login.html", form=form, error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    target = "/pos/login" if current_user.is_authenticated and current_user.role == "cashier" else "/login"
    logout_user()
    session.clear()
    return redirect(target)


def init_accounts(app) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")

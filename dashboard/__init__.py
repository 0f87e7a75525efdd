"""The city's settlement dashboard (/city): figures, exceptions, exposure, settlement, audit.

`init_dashboard(app)` registers the blueprint once (safe to call twice); the CLI group
`flask city …` comes from `dashboard.cli.register_dashboard_cli(app)`.
"""
from __future__ import annotations


def init_dashboard(app) -> None:
    import dashboard.lightning_page  # noqa: F401  (adds /city/lightning to the blueprint)
    import dashboard.venues  # noqa: F401  (adds /city/venues to the blueprint)
    from dashboard.money import bp as money_bp
    from dashboard.web import bp

    if "city" not in app.blueprints:
        app.register_blueprint(bp)
    if "city_money" not in app.blueprints:
        app.register_blueprint(money_bp)

"""The practice-station kiosk: a Flask + htmx app for one station's touchscreen."""

import os

from flask import Flask, request
from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from .config import ROOT, defaults, instance_path, secret_key
from .db import db

__version__ = "0.1.0"

babel = Babel()
csrf = CSRFProtect()
login_manager = LoginManager()
MIGRATIONS = str(ROOT / "kiosk" / "migrations")


def select_locale():
    lang = request.cookies.get("lang") if request else None
    return lang if lang in ("zh_CN", "en") else "zh_CN"


def init_migrate(app: Flask) -> None:
    """Flask-Migrate (and with it Alembic, ~10 MB) is loaded only where the schema is changed."""
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS, render_as_batch=True, compare_type=True)


def create_app(test_config: dict | None = None) -> Flask:
    folder = instance_path(test_config)
    folder.mkdir(parents=True, exist_ok=True)
    app = Flask(
        __name__,
        instance_path=str(folder),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(defaults(folder))
    app.config.from_pyfile("config.py", silent=True)
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(folder)
    if app.config.get("TRUSTED_PROXIES"):
        # Behind Caddy/nginx (docs/deploy.md): take the client address and scheme from them.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    db.init_app(app)
    if os.environ.get("FLASK_RUN_FROM_CLI"):  # `flask --app app db ...` for developers
        init_migrate(app)
    babel.init_app(app, locale_selector=select_locale, default_translation_directories=str(ROOT / "kiosk" / "translations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import auth, web
    from .views import api, api_inbox, kiosk, kiosk_me, manage, volunteer  # noqa: F401 - kiosk_me adds to kiosk.bp, api_inbox to api.bp

    auth.init_app(app)
    web.init_app(app)
    app.register_blueprint(kiosk.bp)
    app.register_blueprint(manage.bp)
    app.register_blueprint(volunteer.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the data API authenticates by signature, not by cookie

    from . import cli, templating

    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    templating.init_app(app)
    cli.init_app(app)
    from . import changelog, sync  # noqa: F401 - changelog hooks every Session's flush

    with app.app_context():
        sync.check_epoch(app)  # a database restored or moved gets a new epoch (kiosk/sync.py)
    return app

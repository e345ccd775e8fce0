"""The data API (/api/v1) and the health check; JSON only, errors as problem details."""

from flask import Blueprint, jsonify
from sqlalchemy import text

from .. import __version__
from ..db import db
from ..models import SCHEMA_VERSION

bp = Blueprint("api", __name__)


def schema_revision() -> str | None:
    try:
        return db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # noqa: BLE001 - a missing table means "not initialised", which we report
        db.session.rollback()
        return None


@bp.get("/healthz")
def healthz():
    ok = True
    try:
        db.session.execute(text("SELECT 1")).scalar()
    except Exception:  # noqa: BLE001
        db.session.rollback()
        ok = False
    revision = schema_revision() if ok else None
    status = 200 if ok and revision else 503
    return (
        jsonify(
            status="ok" if status == 200 else "unavailable",
            version=__version__,
            schema_version=SCHEMA_VERSION,
            schema_revision=revision,
            database="ok" if ok else "error",
        ),
        status,
    )

"""POST /api/v1/inbox: the district's nightly batch for this station (kiosk/inbox.py).

Signed like every /api/v1 request (kiosk/views/api.py checks the signature before this runs).
"""

from flask import jsonify, request

from .. import inbox
from ..db import begin_write, db
from .api import bp


@bp.url_value_preprocessor
def _inbox_size(endpoint, values):
    # Runs before the signature check reads the body: the inbox may be larger than a form.
    if endpoint == "api.inbox":
        request.max_content_length = inbox.MAX_BYTES


def inbox_post():
    """Apply a batch once; the same batch again answers the same (200, "replayed": true)."""
    raw = request.get_data(cache=True)
    prepared = inbox.prepare(raw, request.headers.get("Content-Encoding"))  # outside the write lock
    begin_write()
    try:
        result, replayed = inbox.receive(raw, prepared=prepared)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return jsonify({**result, "replayed": replayed})


bp.add_url_rule("/api/v1/inbox", endpoint="inbox", view_func=inbox_post, methods=["POST"])

"""The nightly sync in the back office: when the district last pulled, what it sent back, the key."""

from .. import inbox, sync
from ..auth import actor
from ..db import begin_write, db
from ..forms import EmptyForm
from ..web import render
from .manage import bp


def _page(status: int = 200, new_key: str | None = None):
    return render("manage/sync.html", "manage/_sync.html", status=status, form=EmptyForm(formdata=None),
                  new_key=new_key, batches=[(b, inbox.result_of(b)) for b in inbox.batches(10)], **sync.status())


@bp.get("/sync")
def sync_status():
    return _page()


@bp.post("/sync/key")
def sync_rotate_key():
    """Rendered, not redirected: the new key is shown this once and kept in no cookie."""
    form = EmptyForm()
    if not form.validate_on_submit():
        return _page(400)
    begin_write()
    secret = sync.rotate_key(actor())
    db.session.commit()
    resp, status = _page(new_key=secret)
    return resp, status, {"Cache-Control": "no-store"}

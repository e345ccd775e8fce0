"""The district's side of the nightly sync (DESIGN.md §4): `kiosk district pull`.

- store.py: the district schema (SQLAlchemy Core, PostgreSQL or SQLite) and the one-transaction
  apply of a page (raw changes, entity rows, checkpoint);
- pull.py: the stations file, the signed HTTP client, retries, full resync, parallel pulls;
- cli.py: the `kiosk district` command group.

Push (roster, balances and allowances back to the stations) is not here yet.
"""

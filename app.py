"""The WSGI entry point: `flask --app app run`, or waitress via `kiosk serve`."""

from kiosk import create_app

app = create_app()

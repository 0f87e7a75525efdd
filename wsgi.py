"""WSGI entry point for gunicorn: the app plus, on the embedded default, its background
work (rate poller, chain watcher, webhook delivery) in this process."""
from app import create_app, start_background_work

app = create_app()
start_background_work(app)

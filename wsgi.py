"""WSGI entry point (scripts/serve runs it with waitress): the app plus, on the embedded
default, its background work (rate poller, chain watcher, webhook delivery) as threads of
this process. Scaled out, web processes run `app:create_app()` and `flask worker` the jobs."""
from app import create_app, start_background_work

app = create_app()
start_background_work(app)

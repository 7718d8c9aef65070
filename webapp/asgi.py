"""HTTP and websockets in one process (daphne). Websockets need a signed-in user: a browser's
session from our own origin, or an API token (the command line; see webapp/core/ws_auth.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, before our handler is made

from webapp.core.chunk_bodies import ChunkASGIHandler  # noqa: E402

django_asgi_app = ChunkASGIHandler()  # Django's handler, with tus chunks kept off a second disk copy

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)

from webapp.core import daphne_request  # noqa: E402
from webapp.core.body_limits import BodyLimitMiddleware  # noqa: E402
from webapp.core.ws_auth import TokenOrSessionAuth  # noqa: E402
from webapp.routing import websocket_urlpatterns  # noqa: E402

# Bodies over their limit are refused before they are read: daphne reads a whole body before it
# calls the application, so the gate goes into daphne's request (with the pacing of streamed
# replies); the middleware is the same rule for servers that stream bodies to the application.
daphne_request.install()

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        # The session path keeps AllowedHostsOriginValidator(AuthMiddlewareStack(...)) as it was.
        "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
    }
)

"""HTTP and websockets in one process (daphne). Websockets need a signed-in user: a browser's
session from our own origin, or an API token (the command line; see webapp/core/ws_auth.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)

from webapp.core.body_limits import BodyLimitMiddleware, install_daphne_gate  # noqa: E402
from webapp.core.ws_auth import TokenOrSessionAuth  # noqa: E402
from webapp.routing import websocket_urlpatterns  # noqa: E402

# Bodies over their limit are refused before they are read: daphne reads a whole body before it
# calls the application, so the gate goes into daphne's request; the middleware is the same rule
# for servers that stream bodies to the application.
install_daphne_gate()

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        # The session path keeps AllowedHostsOriginValidator(AuthMiddlewareStack(...)) as it was.
        "websocket": TokenOrSessionAuth(URLRouter(websocket_urlpatterns)),
    }
)

from django.urls import path

from webapp.projects.consumers import ProjectFeedConsumer

websocket_urlpatterns = [
    path("ws/projects/<int:project_id>/feed/", ProjectFeedConsumer.as_asgi()),
]

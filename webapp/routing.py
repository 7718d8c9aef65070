from django.urls import path

from webapp.jobs.consumers import JobConsumer
from webapp.projects.consumers import ProjectFeedConsumer

websocket_urlpatterns = [
    path("ws/projects/<int:project_id>/feed/", ProjectFeedConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
]

"""The only caller of group_send: every live update goes through here, after commit."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def broadcast(group: str, payload: dict) -> None:
    """Send a JSON-safe payload to a group once the current transaction commits. A bell lost to a
    Redis outage is only logged: the database has the events, and the next bell fills the gap."""

    def send() -> None:
        async_to_sync(get_channel_layer().group_send)(group, {"type": "feed.event", "payload": payload})

    transaction.on_commit(send, robust=True)

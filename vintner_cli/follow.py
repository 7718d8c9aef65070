"""Follow a job live over ws/jobs/<id>/?after=<seq> until it ends.

The server sends {"type": "events", "events": [{seq, kind, data, at}, …]}: first every stored
event after `after`, then new ones as they happen, each once and in order. A dropped connection
is opened again with `after=<last seq seen>`, so nothing is lost or shown twice. If the server
refuses the websocket itself (a proxy without websockets), the same events are polled from
GET /api/v1/jobs/<id>/events/?after=<seq>.
"""

import json
import time

from websockets.exceptions import InvalidProxy, InvalidStatus, InvalidURI, WebSocketException
from websockets.sync.client import connect

from vintner_cli.client import ApiError, Client
from vintner_cli.progress import JobView

TERMINAL = ("succeeded", "failed", "cancelled")
GIVE_UP_AFTER = 300.0  # seconds of failed reconnects before giving up (the job goes on regardless)
POLL_EVERY = 1.0
MAX_FRAME = 64 * 2**20  # a replay page of 1000 long log lines is more than websockets' default 1 MiB


def stream_url(base: str, job_id: int, after: int) -> str:
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/jobs/{job_id}/?after={after}"


class _Follower:
    def __init__(self, client: Client, job_id: int, view: JobView) -> None:
        self.client, self.job_id, self.view = client, job_id, view
        self.last = 0
        self.final: str | None = None

    def take(self, events: list[dict]) -> None:
        for event in events:
            if event["seq"] <= self.last:
                continue
            self.last = event["seq"]
            self.view.event(event)
            if event["kind"] == "state" and event["data"].get("state") in TERMINAL:
                self.final = event["data"]["state"]
                return

    def websocket(self) -> None:
        """One connection, until the job ends or the connection does."""
        url = stream_url(self.client.url, self.job_id, self.last)
        with connect(url, additional_headers=self.client.auth_headers, open_timeout=15, max_size=MAX_FRAME,
                     user_agent_header=self.client.session.headers["User-Agent"]) as socket:
            for raw in socket:
                message = json.loads(raw)
                if message.get("type") == "events":
                    self.take(message["events"])
                    if self.final:
                        return

    def poll(self) -> None:
        while not self.final:
            page = self.client.get(f"jobs/{self.job_id}/events/", what=f"Job {self.job_id}", after=self.last)
            self.take(page["events"])
            if not page["events"] and not self.final:
                time.sleep(POLL_EVERY)

    def run(self) -> None:
        failing_since: float | None = None
        delay = 1.0
        while not self.final:
            try:
                self.websocket()
                failing_since, delay = None, 1.0
                continue  # the server closed a healthy stream (a restart): open it again
            except InvalidStatus as error:
                if error.response.status_code == 403:
                    # Refused at the handshake: either we may no longer see the job (the REST call
                    # says so in words) or websockets do not reach the server: poll instead.
                    self.client.get(f"jobs/{self.job_id}/", what=f"Job {self.job_id}")
                    self.view.note("The server refused the websocket; following by polling instead.")
                    self.poll()
                    return
                reason = f"HTTP {error.response.status_code}"
            except (InvalidURI, InvalidProxy) as error:
                raise ApiError(f"Cannot open a websocket to {self.client.url}: {error}") from None
            except (OSError, TimeoutError, WebSocketException) as error:  # dropped, refused, closed mid-frame
                reason = str(error) or type(error).__name__
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > GIVE_UP_AFTER:
                raise ApiError(f"Lost the connection to {self.client.url} ({reason}). The job goes on; "
                               f"follow it again with: vintner jobs follow {self.job_id}")
            self.view.note(f"Connection lost ({reason}); reconnecting from event {self.last}…")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def follow(client: Client, job: dict, view: JobView) -> dict:
    """Show the job's events until it ends; returns the job as it ended (a fresh GET)."""
    follower = _Follower(client, job["id"], view)
    follower.run()
    return client.get(f"jobs/{job['id']}/", what=f"Job {job['id']}")

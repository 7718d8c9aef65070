"""The reference for bench/upload.py: the bare transport under Vintner's tus endpoint. daphne hands
this ASGI app each PATCH body and it appends the bytes to one file. No Django, no auth, no
database, no hashing: what moving the bytes through daphne to disk costs by itself."""

import os
from pathlib import Path

TARGET = Path(os.environ["REFERENCE_UPLOAD_FILE"])


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    received = 0
    with open(TARGET, "ab") as target:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            target.write(message.get("body", b""))
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 204, "headers": [(b"upload-offset", str(TARGET.stat().st_size).encode())]})
    await send({"type": "http.response.body", "body": b""})

"""A tus chunk's body as daphne's messages (webapp/core/chunk_bodies.py) and the copy that writes
and hashes it (webapp/uploads/services.py)."""

import hashlib
import io
import os

import pytest

from webapp.core.chunk_bodies import MessageBody
from webapp.uploads.services import _write_hashing


def messages(total: int, size: int) -> list[bytes]:
    data = os.urandom(total)
    return [data[start : start + size] for start in range(0, total, size)]


@pytest.mark.parametrize("read_size", [1, 1000, 8192, 2**20])
def test_the_messages_read_back_in_order_whatever_the_read_size(read_size):
    parts = messages(50_000, 8192) + [b""] + messages(3000, 7)
    body, out = MessageBody(parts), []
    while block := body.read(read_size):
        assert len(block) <= read_size
        out.append(bytes(block))
    assert b"".join(out) == b"".join(parts)


def test_a_whole_message_is_handed_out_as_it_is_not_copied():
    parts = messages(3 * 8192, 8192)
    body = MessageBody(parts)
    assert all(body.read(2**20) is part for part in parts)
    assert body.read(2**20) == b""


def test_the_copy_writes_and_hashes_every_byte_across_many_batches(tmp_path):
    parts = messages(3 * 2**20 + 12345, 8192)
    target = tmp_path / "part"
    with open(target, "wb") as part:
        hasher = hashlib.sha256()
        written = _write_hashing(MessageBody(parts), 3 * 2**20 + 12345, part, hasher)
    data = b"".join(parts)
    assert written == len(data)
    assert target.read_bytes() == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_body_shorter_than_announced_writes_and_hashes_what_came(tmp_path):
    data = os.urandom(100_000)
    with open(tmp_path / "part", "wb") as part:
        hasher = hashlib.sha256()
        written = _write_hashing(io.BytesIO(data), 1_000_000, part, hasher)
    assert written == len(data)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()

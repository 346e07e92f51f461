"""RedisStreamSink against the real Redis on 127.0.0.1:6379: one entry per event, in order,
trimmed with MAXLEN ~, read back with a consumer group; Redis down means retried."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest

from hookwire import CallbackManager, trace
from hookwire.errors import DeliveryError
from hookwire.export import OutboxCallback, RedisStreamSink, Relay
from hookwire.stores import runner
from hookwire.stores.outbox import Outbox

pytestmark = pytest.mark.redis


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    import redis

    # a "%" in the name: the sink writes its commands with %-formatting
    name = f"hookwire-test:%d:{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name)
    client.close()


def test_events_go_to_the_stream_and_a_consumer_group_reads_them(
    db_url: str, redis_url: str, stream: str
) -> None:
    import redis

    sink = RedisStreamSink(redis_url, stream=stream, name=f"r-{stream[-10:]}")
    handler = OutboxCallback([sink], db_url)
    manager = CallbackManager([handler])
    for n in range(5):
        with trace("turn", callbacks=manager, conversation_id="c1"):
            manager.on_memory_store(f"m{n}")
    assert handler.flush(30)
    relay = Relay([sink], db_url, poll=0.01)
    relay.run(until_idle=True)
    relay.stop()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xgroup_create(stream, "workers", id="0")
    entries = client.xreadgroup("workers", "w1", {stream: ">"}, count=100)[0][1]
    assert len(entries) == 15
    stored = [f for _, f in entries]
    assert [
        orjson.loads(f["body"])["data"]["content"] for f in stored if f["event"] == "memory_store"
    ] == [f"m{n}" for n in range(5)]
    assert len({f["id"] for f in stored}) == 15 and {f["key"] for f in stored} == {"c1"}
    assert client.xack(stream, "workers", *[i for i, _ in entries]) == 15
    client.close()


def test_the_stream_is_trimmed(redis_url: str, stream: str) -> None:
    from datetime import datetime, timezone

    import redis

    from hookwire.stores.outbox import Delivery

    sink = RedisStreamSink(redis_url, stream=stream, maxlen=10)
    at = datetime.now(timezone.utc)
    batch = [Delivery(i, str(uuid.uuid4()), "redis", "k", "e", at, b"{}", 0) for i in range(500)]
    sink.send(batch)
    client = redis.Redis.from_url(redis_url)
    assert client.xlen(stream) < 500  # MAXLEN ~ trims whole nodes, so about 10 stay
    client.close()
    sink.close()


def test_redis_down_is_a_delivery_error(tmp_path: pytest.TempPathFactory) -> None:
    from datetime import datetime, timezone

    from hookwire.stores.outbox import Delivery

    sink = RedisStreamSink("redis://127.0.0.1:9/0", stream="x", timeout=2)
    at = datetime.now(timezone.utc)
    with pytest.raises(DeliveryError, match="XADD"):
        sink.send([Delivery(1, "id", "redis", "k", "e", at, b"{}", 0)])
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    handler = OutboxCallback([sink], url)
    CallbackManager([handler]).on_error(RuntimeError("x"))
    assert handler.flush(30)
    relay = Relay([sink], url, backoff=0.01)
    relay.run_once()
    status = runner.run_sync(Outbox(url).status())
    assert status[0]["failing"] == 1


def test_a_command_redis_refuses_is_a_delivery_error_and_the_link_stays_usable(
    redis_url: str, stream: str
) -> None:
    from datetime import datetime, timezone

    import redis

    from hookwire.stores.outbox import Delivery

    client = redis.Redis.from_url(redis_url)
    client.set(stream, "not a stream")
    sink = RedisStreamSink(redis_url, stream=stream)
    at = datetime.now(timezone.utc)
    batch = [Delivery(i, f"id-{i}", "redis", "k", "e", at, b'{"n":%d}' % i, 0) for i in range(3)]
    with pytest.raises(DeliveryError, match="3 of 3"):
        sink.send(batch)
    client.delete(stream)
    sink.send(batch)  # every reply of the failed pipeline was read: the next one is clean
    entries = client.xrange(stream)
    assert [e[1][b"id"] for e in entries] == [b"id-0", b"id-1", b"id-2"]
    assert entries[2][1][b"body"] == b'{"n":2}' and entries[0][1][b"key"] == b"k"
    assert entries[0][1][b"created_at"] == at.isoformat().encode()
    client.close()
    sink.close()

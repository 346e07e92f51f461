"""``hookwire.ui.server`` over HTTP on 127.0.0.1: the pages, the JSON API on a seeded
database (SQLite and PostgreSQL), and the access rules (read-only, localhost, token)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest
from seed_data import Seeded, serve, trace_records

from hookwire.stores import runner
from hookwire.stores.traces import spans_from_records
from hookwire.ui.server import COOKIE, DashboardServer


def call(
    server: DashboardServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def get_json(server: DashboardServer, path: str) -> Any:
    status, _, body = call(server, path)
    assert status == 200, body
    return json.loads(body)


def test_pages_are_served_with_a_strict_policy(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, _ = dashboard
    status, headers, body = call(server, "/")
    assert status == 200 and b"/static/app.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for name in ("app.js", "style.css"):
        status, headers, body = call(server, f"/static/{name}")
        assert status == 200 and body and headers["X-Content-Type-Options"] == "nosniff"
    assert call(server, "/static/../server.py")[0] == 404
    assert call(server, "/static/nope.js")[0] == 404


def test_runs_trace_and_span(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, seeded = dashboard
    runs = get_json(server, "/api/runs?limit=2")
    assert [r["span_id"] for r in runs["items"]] == seeded.runs[:2]
    assert runs["next_cursor"]
    rest = get_json(server, f"/api/runs?limit=2&cursor={runs['next_cursor']}")
    assert [r["span_id"] for r in rest["items"]] == seeded.runs[2:]
    assert rest["next_cursor"] is None
    mine = get_json(server, f"/api/runs?user={seeded.user}&model=gpt-4o&min_cost=0.001")
    assert len(mine["items"]) == 3
    found = get_json(server, f"/api/runs?q={seeded.runs[1]}")
    assert [r["span_id"] for r in found["items"]] == [seeded.runs[1]]

    run = seeded.runs[0]
    roots = get_json(server, f"/api/trace/{run}/children")["items"]
    assert [(r["span_id"], r["children"]) for r in roots] == [(run, 2)]
    assert roots[0]["start_ms"] < roots[0]["end_ms"]
    kids = get_json(server, f"/api/trace/{run}/children?parent={run}")["items"]
    assert [k["kind"] for k in kids] == ["llm", "tool"]
    assert kids[0]["retries"] == 1 and kids[0]["children"] == 1
    span = get_json(server, f"/api/span/{run}-llm")
    assert span["output"] == f"answer of {run}" and span["cost"] == "0.002"
    assert span["input"] == [{"role": "user", "content": "where is my order?"}]


def test_costs_health_and_conversations(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, seeded = dashboard
    costs = get_json(server, "/api/costs?days=7")
    mine = [r for r in costs["by_user"] if r["user"] == seeded.user]
    assert mine and mine[0]["calls"] == 3 and mine[0]["cost"] == "0.006"
    budget = next(b for b in costs["budgets"] if b["key"] == seeded.user)
    assert budget["limit"] == "0.05" and budget["spent"] == "0.006"
    assert budget["remaining"] == "0.044" and budget["per_day"] is not None
    assert any(b["scope"] == "org" and b["key"] == "acme" for b in costs["budgets"])

    health = get_json(server, "/api/health?hours=1")
    # percentiles from the rollups' histograms: within a bucket's 4.4 %
    assert health["llm"]["calls"] == 3
    assert health["llm"]["latency_p50"] == pytest.approx(290.0, rel=0.045)
    assert health["llm"]["ttft_p95"] == pytest.approx(40.0, rel=0.045)
    assert health["retries"] == 3
    assert {"error_type": "ConnectionError", "count": 1} in health["errors"]
    assert sum(s["calls"] for s in health["series"]) == 3

    chats = get_json(server, f"/api/conversations?user={seeded.user}")["items"]
    assert [c["id"] for c in chats] == [seeded.conversation]
    chat = get_json(server, f"/api/conversation/{seeded.conversation}")
    assert chat["state"] == "normal"
    assert [m["run_id"] for m in chat["messages"]] == [None, seeded.runs[0]]


def test_bad_requests_say_what_to_change(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, _ = dashboard
    for path, status, words in [
        ("/api/runs?status=weird", 400, "status"),
        ("/api/runs?since=yesterday", 400, "ISO 8601"),
        ("/api/runs?cursor=zzz", 400, "cursor"),
        ("/api/runs?limit=0", 400, "limit"),
        ("/api/span/nope", 404, "no span"),
        ("/api/conversation/nope", 404, "nope"),
        ("/api/unknown", 404, "no such API route"),
    ]:
        got, _, body = call(server, path)
        assert got == status, (path, body)
        assert words in json.loads(body)["error"], path


def test_the_dashboard_is_read_only_and_local(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, _ = dashboard
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = call(server, "/api/runs", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    # a page elsewhere reaching 127.0.0.1 through a name of its own (DNS rebinding)
    assert call(server, "/api/runs", headers={"Host": "evil.example:8765"})[0] == 403
    assert call(server, "/api/runs", headers={"Host": "localhost:8765"})[0] == 200


def test_a_token_guards_every_request(seeded: Seeded) -> None:
    with pytest.raises(ValueError, match="needs a token"):
        DashboardServer.__new__(DashboardServer).__init__(  # type: ignore[misc]
            serve.__globals__["DashboardApi"](seeded.url), "0.0.0.0", 0, None
        )
    server = serve(seeded.url, token="s3cret-token")
    try:
        assert call(server, "/")[0] == 401
        assert call(server, "/api/runs?token=wrong")[0] == 401
        status, headers, _ = call(server, "/?token=s3cret-token")
        assert status == 303 and headers["Location"] == "/"
        assert f"{COOKIE}=s3cret-token" in headers["Set-Cookie"]
        assert "HttpOnly" in headers["Set-Cookie"]
        assert call(server, "/api/runs", headers={"Cookie": f"{COOKIE}=s3cret-token"})[0] == 200
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert call(server, "/api/runs", headers=bearer)[0] == 200
        assert server.url.endswith("/?token=s3cret-token")
    finally:
        server.shutdown()
        server.server_close()


def test_live_events_bring_each_new_run(dashboard: tuple[DashboardServer, Seeded]) -> None:
    server, seeded = dashboard
    host, port = server.server_address[:2]
    newest = get_json(server, "/api/runs?limit=1")["items"][0]["started_at"]
    sock = socket.create_connection((str(host), port), timeout=30)
    try:
        sock.sendall(
            f"GET /api/events?after={newest.replace('+', '%2B')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        assert b"text/event-stream" in received
        fresh = "live-" + seeded.runs[0][::-1]
        records = trace_records(fresh, time.time(), seeded.user)
        runner.run_sync(seeded.store.record(spans_from_records(records)))
        while fresh.encode() not in received:
            chunk = sock.recv(4096)
            assert chunk, "the stream ended before the run arrived"
            received += chunk
        event = received.split(b"event: run\ndata: ")[-1].split(b"\n\n")[0]
        assert json.loads(event)["span_id"] == fresh
        # the runs the page had are not sent again
        assert f'"span_id":"{seeded.runs[0]}"'.encode() not in received
    finally:
        sock.close()

"""Service mode (/work/shared/SERVICE.md) driven by python-socketio: the sync
socketio.Client and the asyncio socketio.AsyncClient against one riptide node
(see conftest.py), plus the HTTP API through requests."""

import asyncio
import queue
import time

import pytest
import socketio

from conftest import OTHER_SECRET, mint, now_s

WS = ["websocket"]


def connect_sync(server, token=None, transports=WS, headers=None, handlers=None):
    """A connected sync client (handlers registered before the connect)."""
    sio = socketio.Client(reconnection=False)
    for event, fn in (handlers or {}).items():
        sio.on(event, fn)
    kwargs = {"transports": transports, "wait_timeout": 5}
    if token is not None:
        kwargs["auth"] = {"token": token}
    if headers:
        kwargs["headers"] = headers
    sio.connect(server.url, **kwargs)
    assert sio.connected
    return sio


def refusal(server, **kwargs):
    """Connect expecting a refusal; returns the CONNECT_ERROR data."""
    sio = socketio.Client(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data=None: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(server.url, transports=WS, wait_timeout=5, **kwargs)
    sio.disconnect()
    assert errors, "a connect_error event"
    return errors[0]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("via", ["auth", "header"])
def test_connect_with_a_token(server, transport, via):
    sub = f"py-{via}-{transport}"
    got = queue.Queue()
    token = mint(sub)
    kwargs = {"token": token} if via == "auth" else {"headers": {"Authorization": f"Bearer {token}"}}
    sio = connect_sync(server, transports=[transport], handlers={"hello": got.put}, **kwargs)
    try:
        server.publish(rooms=[f"user:{sub}"], event="hello", data={"to": sub})
        assert got.get(timeout=3) == {"to": sub}
    finally:
        sio.disconnect()


def test_refusal_reasons(server):
    assert refusal(server) == {"message": "unauthorized", "data": {"reason": "missing token"}}
    assert refusal(server, auth={"token": "not-a-jwt"}) == {"message": "unauthorized", "data": {"reason": "invalid token"}}
    assert refusal(server, auth={"token": mint("py", key=OTHER_SECRET)}) == {
        "message": "unauthorized",
        "data": {"reason": "invalid token"},
    }
    assert refusal(server, auth={"token": mint("py", exp=now_s() - 5)}) == {
        "message": "unauthorized",
        "data": {"reason": "token expired"},
    }


def test_subscribe_and_api_publish(server):
    got = queue.Queue()
    sio = connect_sync(server, mint("py-sub"), handlers={"headline": got.put})
    try:
        assert sio.call("subscribe", ["news", "secret"], timeout=5) == {
            "ok": ["news"],
            "refused": [{"channel": "secret", "reason": "forbidden"}],
        }
        server.publish(rooms=["news"], event="headline", data={"title": "from python"})
        assert got.get(timeout=3) == {"title": "from python"}
        assert sio.call("presence", "news", timeout=5) == {"sockets": 1, "users": ["py-sub"]}
        assert sio.call("unsubscribe", "news", timeout=5) == {"ok": ["news"]}
    finally:
        sio.disconnect()


def test_a_python_handler_acks_an_api_publish(server):
    sio = connect_sync(server, mint("py-acker"), handlers={"ask": lambda data: {"answer": data}})
    try:
        status, body = server.api(
            "POST", "/api/publish", {"rooms": ["user:py-acker"], "event": "ask", "data": 1, "ack_timeout_ms": 1000}
        )
        assert (status, body) == (200, {"ok": True, "acked": 1, "unanswered": 0})
    finally:
        sio.disconnect()


def test_auth_refresh_async(server):
    async def main():
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.url, auth={"token": mint("py-async")}, transports=WS, wait_timeout=5)
        try:
            exp = now_s() + 7200
            assert await sio.call("auth:refresh", mint("py-async", exp=exp), timeout=5) == {"ok": True, "exp": exp}
            assert await sio.call("auth:refresh", mint("someone-else"), timeout=5) == {"error": "invalid token"}
            assert await sio.call("auth:refresh", mint("py-async", exp=now_s() - 5), timeout=5) == {"error": "token expired"}
            assert sio.connected
        finally:
            await sio.disconnect()

    asyncio.run(main())


def test_expiry_refreshed_in_time_async(server):
    """auth:expiring, a refresh, still connected past the old exp, then
    auth:expired and a server disconnect at the new exp."""

    async def main():
        exp1 = now_s() + 2
        exp2 = exp1 + 2
        sio = socketio.AsyncClient(reconnection=False)
        events = asyncio.Queue()

        @sio.on("auth:expiring")
        async def expiring(data):
            await events.put(("expiring", data))

        @sio.on("auth:expired")
        async def expired(data):
            await events.put(("expired", data))

        @sio.on("disconnect")
        async def disconnected(reason=None):
            await events.put(("disconnect", reason))

        await sio.connect(server.url, auth={"token": mint("py-exp", exp=exp1)}, transports=WS, wait_timeout=5)
        try:
            assert await asyncio.wait_for(events.get(), 4) == ("expiring", {"exp": exp1})
            assert await sio.call("auth:refresh", mint("py-exp", exp=exp2), timeout=5) == {"ok": True, "exp": exp2}
            await asyncio.sleep(max(0, exp1 + 0.5 - time.time()))
            assert sio.connected, "connected past the old exp"
            assert events.empty(), "nothing for the old exp"
            assert await asyncio.wait_for(events.get(), 4) == ("expiring", {"exp": exp2})
            assert await asyncio.wait_for(events.get(), 3) == ("expired", {"exp": exp2})
            kind, _reason = await asyncio.wait_for(events.get(), 3)
            assert kind == "disconnect"
        finally:
            await sio.disconnect()

    asyncio.run(main())


def test_user_emit_between_a_sync_and_an_async_client(server):
    async def main():
        token = mint("py-devices")
        got_sync = queue.Queue()
        a = socketio.Client(reconnection=False)
        a.on("read", got_sync.put)
        await asyncio.to_thread(a.connect, server.url, auth={"token": token}, transports=WS, wait_timeout=5)
        b = socketio.AsyncClient(reconnection=False)
        got_async = asyncio.Queue()

        @b.on("read")
        async def on_read(data):
            await got_async.put(data)

        await b.connect(server.url, auth={"token": token}, transports=["polling"], wait_timeout=5)
        try:
            assert await asyncio.to_thread(a.call, "user:emit", ("read", {"id": 1}), timeout=5) == {"ok": True}
            assert await asyncio.wait_for(got_async.get(), 3) == {"id": 1}
            assert await b.call("user:emit", ("read", {"id": 2}), timeout=5) == {"ok": True}
            assert await asyncio.to_thread(got_sync.get, timeout=3) == {"id": 2}
            await asyncio.sleep(0.3)
            assert got_sync.empty(), "the sync sender does not get its own"
            assert got_async.empty(), "the async sender does not get its own"
        finally:
            await b.disconnect()
            await asyncio.to_thread(a.disconnect)

    asyncio.run(main())


def test_api_errors(server):
    assert server.api("GET", "/api/info", key=None) == (401, {"error": "unauthorized"})
    assert server.api("GET", "/api/info", key="wrong-key-wrong-key") == (401, {"error": "unauthorized"})
    status, body = server.api("POST", "/api/publish", {"event": "e"})
    assert status == 400 and "rooms" in body["error"], (status, body)
    status, body = server.api("GET", "/api/info")
    assert status == 200 and len(body["nodes"]) == 1, (status, body)

"""python-socketio with `serializer="msgpack"` against Riptide's msgpack parser.

Its own server: the interop example ($RIPTIDE_INTEROP_BIN, default
<repo>/target/debug/examples/interop) with RIPTIDE__SOCKETIO__PARSER=msgpack
on a free port. The sync `socketio.Client` (websocket-client) and
`socketio.AsyncClient` (aiohttp), over WebSocket and long-polling: connect
with auth, events and acks both ways, binary both ways, rooms.
"""

import asyncio
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import requests
import socketio

REPO = pathlib.Path(__file__).resolve().parents[3]
INTEROP_BIN = os.environ.get(
    "RIPTIDE_INTEROP_BIN", str(REPO / "target" / "debug" / "examples" / "interop")
)
WAIT = 5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def msgpack_server(request):
    if not os.access(INTEROP_BIN, os.X_OK):
        pytest.fail(
            f"no interop server at {INTEROP_BIN} "
            "(cargo build --example interop, or set RIPTIDE_INTEROP_BIN)"
        )
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "RIPTIDE__SOCKETIO__PARSER": "msgpack"}
    log = tempfile.NamedTemporaryFile(prefix="riptide-msgpack-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [INTEROP_BIN], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the interop server did not start:\n{pathlib.Path(log.name).read_text()}")
        time.sleep(0.05)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    if request.session.testsfailed:
        print(pathlib.Path(log.name).read_text(errors="replace")[-20000:])
    os.unlink(log.name)


TRANSPORTS = [["websocket"], ["polling"]]


def _connect_sync(url, transports, **kw):
    sio = socketio.Client(serializer="msgpack", reconnection=False)
    welcome = threading.Event()
    got = {}

    @sio.on("welcome")
    def on_welcome(data):
        got["welcome"] = data
        welcome.set()

    sio.connect(url, transports=transports, wait_timeout=WAIT, **kw)
    assert welcome.wait(WAIT), "welcome"
    return sio, got["welcome"]


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: t[0])
def test_sync_client_connects_with_auth_and_gets_acks(msgpack_server, transports):
    sio, welcome = _connect_sync(msgpack_server, transports, auth={"token": "t"})
    try:
        assert welcome == {"sid": sio.get_sid(), "nsp": "/", "auth": {"token": "t"}}
        args = ["s", 1, -2, 2.5, None, True, {"k": [1, {"n": None}]}, [], {}]
        assert sio.call("echo", tuple(args), timeout=WAIT) == tuple(args)
        # One argument comes back as itself.
        assert sio.call("echo", "one", timeout=WAIT) == "one"
    finally:
        sio.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: t[0])
def test_sync_client_binary_both_ways(msgpack_server, transports):
    sio, _ = _connect_sync(msgpack_server, transports)
    try:
        blob = bytes(range(256)) * 3
        back = sio.call("echo", ("file", blob, {"nested": [b"\x00", b""]}), timeout=WAIT)
        assert back == ("file", blob, {"nested": [b"\x00", b""]})
    finally:
        sio.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: t[0])
def test_sync_client_answers_the_servers_questions(msgpack_server, transports):
    sio, _ = _connect_sync(msgpack_server, transports)
    questions = []

    @sio.on("question")
    def on_question(*args):
        questions.append(args)
        return "answer", b"\x01\x02"

    try:
        reply = sio.call("ask-client", timeout=WAIT)
        assert questions == [(1, "two")]
        assert reply == {"answer": ["answer", b"\x01\x02"]}
    finally:
        sio.disconnect()


def test_sync_client_plain_events_and_rooms(msgpack_server):
    a, _ = _connect_sync(msgpack_server, ["websocket"])
    b, _ = _connect_sync(msgpack_server, ["polling"])
    try:
        back = threading.Event()
        got = []

        @a.on("message-back")
        def on_back(*args):
            got.append(args)
            back.set()

        a.emit("message", ("hi", b"\xff"))
        assert back.wait(WAIT)
        assert got == [("hi", b"\xff")]

        msgs = []
        arrived = threading.Event()

        @b.on("msg")
        def on_msg(*args):
            msgs.append(args)
            arrived.set()

        assert b.call("join", "r", timeout=WAIT)["rooms"].count("r") == 1
        a.emit("publish", ("r", {"n": 1}, b"\x07"))
        assert arrived.wait(WAIT)
        assert msgs == [({"n": 1}, b"\x07")]
    finally:
        a.disconnect()
        b.disconnect()


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: t[0])
def test_async_client_connect_events_acks_binary(msgpack_server, transports):
    async def run():
        sio = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        welcome = asyncio.get_running_loop().create_future()
        questions = []

        @sio.on("welcome")
        async def on_welcome(data):
            if not welcome.done():
                welcome.set_result(data)

        @sio.on("question")
        async def on_question(*args):
            questions.append(args)
            return b"async"

        await sio.connect(
            msgpack_server, transports=transports, auth={"token": "a"}, wait_timeout=WAIT
        )
        try:
            data = await asyncio.wait_for(welcome, WAIT)
            assert data == {"sid": sio.get_sid(), "nsp": "/", "auth": {"token": "a"}}
            blob = b"\x00\x01" * 1000
            back = await sio.call("echo", ("x", blob, 3), timeout=WAIT)
            assert back == ("x", blob, 3)
            reply = await sio.call("ask-client", timeout=WAIT)
            assert questions == [(1, "two")]
            assert reply == {"answer": [b"async"]}
        finally:
            await sio.disconnect()

    asyncio.run(run())

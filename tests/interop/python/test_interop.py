"""python-socketio against the interop server (examples/interop.rs): every
test runs with the sync socketio.Client and the asyncio socketio.AsyncClient
(the `make_client` fixture, drivers.py) over websocket, over polling, and
over polling upgraded to websocket (the client's default): connect with auth
and a refusal, events and acks both ways, binary, rooms, reconnection after a
server crash and after a server-side close."""

import time
import uuid

import pytest
import socketio

from drivers import Inbox

# The transports the client is given; None is its default, polling then an
# upgrade to websocket.
TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": None}
# Retry quickly so that a reconnection test takes a second, not the
# client's default 1-5 s per attempt.
FAST_RECONNECT = {"reconnection": True, "reconnection_delay": 0.2, "reconnection_delay_max": 0.5, "randomization_factor": 0.1}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request):
    return request.param


def wait_until(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.02)


def new_client(make_client, srv, transport, namespace="/", auth=None, events=(), handlers=None, **options):
    """A connected client and its inboxes (`welcome` and each of `events`),
    every handler registered before the connect."""
    client = make_client(**({"reconnection": False} | options))
    boxes = {name: Inbox(f'"{name}" on {namespace}') for name in ("welcome", *events)}
    for name, box in boxes.items():
        client.on(name, box.put, namespace)
    for name, handler in (handlers or {}).items():
        client.on(name, handler, namespace)
    open_client(client, boxes, srv, transport, namespace, auth)
    return client, boxes


def open_client(client, boxes, srv, transport, namespace="/", auth=None):
    """Connect `client` (again) and check the server's welcome: returns it,
    and keeps it as `client.welcome`."""
    kwargs = {"namespaces": [namespace], "transports": TRANSPORTS[transport]}
    if auth is not None:
        kwargs["auth"] = auth
    client.connect(srv.url, **kwargs)
    assert client.connected
    check_transport(client, transport)
    (welcome,) = boxes["welcome"].get()
    assert welcome["nsp"] == namespace
    assert welcome["sid"] == client.sid(namespace), "the welcome names the socket's id"
    client.welcome = welcome
    return welcome


def check_transport(client, transport):
    if transport == "upgrade":
        wait_until(lambda: client.transport() == "websocket", 5, "upgraded to websocket")
    else:
        assert client.transport() == transport


def room_name():
    return f"room-{uuid.uuid4().hex[:12]}"


# -- connect with auth ------------------------------------------------------


def test_connect_with_auth(make_client, interop, transport):
    client, _ = new_client(make_client, interop, transport, "/private", auth={"token": "secret"})
    # the welcome of /private carries the auth the server saw
    assert client.welcome["auth"] == {"token": "secret"}
    assert client.call("echo", "private", namespace="/private") == "private"


@pytest.mark.parametrize("auth", [None, {"token": "wrong"}], ids=["no-auth", "wrong-token"])
def test_refused_with_the_servers_message(make_client, interop, transport, auth):
    client = make_client(reconnection=False)
    errors = Inbox('"connect_error" on /private')
    client.on("connect_error", errors.put, "/private")
    kwargs = {"namespaces": ["/private"], "transports": TRANSPORTS[transport]}
    if auth is not None:
        kwargs["auth"] = auth
    with pytest.raises(socketio.exceptions.ConnectionError, match="/private"):
        client.connect(interop.url, **kwargs)
    assert errors.get() == ({"message": "unauthorized", "data": {"reason": "bad token"}},)
    assert not client.connected


# -- events and acks, both ways ---------------------------------------------


def test_events_and_acks_client_to_server(make_client, interop, transport):
    client, boxes = new_client(make_client, interop, transport, events=("message-back",))
    args = ("text", 42, -1.5, True, None, [1, "x"], {"nested": {"k": [1, 2]}, "ünï": "cödé ✓"})
    assert client.call("echo", args) == args, "several arguments come back as a tuple"
    assert client.call("echo", "one") == "one"
    assert client.call("echo") is None, "an ack without arguments"
    # an event from the server: message -> message-back with the same arguments
    client.emit("message", ("hello", {"n": 1}))
    assert boxes["message-back"].get() == ("hello", {"n": 1})


def test_acks_server_to_client(make_client, interop, transport):
    questions = Inbox('"question" from the server')

    def question(*args):
        questions.put(*args)
        return ("got", *args)

    client, _ = new_client(make_client, interop, transport, handlers={"question": question})
    # ask-client: the server emits `question` (1, "two") with an ack, the
    # client's handler answers, the server acks the answer back.
    assert client.call("ask-client") == {"answer": ["got", 1, "two"]}
    assert questions.get() == (1, "two")


# -- binary -------------------------------------------------------------------


def test_binary_both_ways(make_client, interop, transport):
    blob = bytes(range(256))
    nested = {"file": blob, "parts": [b"\x00", {"deep": b"\xff\xfe", "text": "t"}], "empty": b"", "n": 3}
    answer = {"bin": b"\x01\x02\x03", "list": [blob]}
    client, boxes = new_client(
        make_client, interop, transport, events=("message-back",), handlers={"question": lambda *args: answer}
    )
    # client -> server binary event, server -> client binary ack
    assert client.call("echo", (b"top", nested)) == (b"top", nested)
    # server -> client binary event
    client.emit("message", (nested, blob))
    assert boxes["message-back"].get() == (nested, blob)
    # client -> server binary ack (the answer to `question`), sent back to
    # the client inside the server's ack
    assert client.call("ask-client") == {"answer": [answer]}


# -- rooms --------------------------------------------------------------------


def test_rooms_join_publish_leave(make_client, interop, transport):
    a, a_boxes = new_client(make_client, interop, transport, events=("msg",))
    b, b_boxes = new_client(make_client, interop, transport, events=("msg",))
    room = room_name()

    assert a.call("join", room) == {"rooms": sorted([a.sid(), room])}
    b.emit("publish", (room, "to-room", 1))
    assert a_boxes["msg"].get() == ("to-room", 1)
    b_boxes["msg"].expect_none(0.3)  # b is not in the room

    assert b.call("join", room) == {"rooms": sorted([b.sid(), room])}
    a.emit("publish-others", (room, "from-a", b"\x07"))
    assert b_boxes["msg"].get() == ("from-a", b"\x07")
    a.emit("publish", (room, "everyone"))
    assert a_boxes["msg"].get() == ("everyone",), "publish reaches the sender too; publish-others did not"
    assert b_boxes["msg"].get() == ("everyone",)

    assert a.call("leave", room) == {"rooms": [a.sid()]}
    b.emit("publish", (room, "after-leave"))
    assert b_boxes["msg"].get() == ("after-leave",)
    a_boxes["msg"].expect_none(0.3)


# -- reconnection ---------------------------------------------------------------


def test_reconnects_by_itself_after_a_server_restart(own_interop, make_client, transport):
    # own_interop first: the clients are closed (teardown runs in reverse)
    # while their server still runs, not left reconnecting to a stopped one.
    client, boxes = new_client(
        make_client, own_interop, transport, events=("connect", "disconnect", "connect_error"), **FAST_RECONNECT
    )
    boxes["connect"].get()
    first_sid = client.welcome["sid"]
    assert client.call("echo", "before") == "before"

    own_interop.kill()
    (reason,) = boxes["disconnect"].get(5)
    assert reason not in (socketio.Client.reason.CLIENT_DISCONNECT, socketio.Client.reason.SERVER_DISCONNECT), reason
    assert not client.connected
    boxes["connect_error"].get(5)  # at least one attempt failed against the dead port

    own_interop.start()
    boxes["connect"].get(10)
    (welcome,) = boxes["welcome"].get(10)
    # the sync client says connected only after its connect handlers ran
    wait_until(lambda: client.connected, 5, "connected again")
    assert welcome["sid"] == client.sid() != first_sid, "a new socket id from the new server"
    check_transport(client, transport)
    assert client.call("echo", ("after", {"restarted": True})) == ("after", {"restarted": True})
    # the new server knows nothing of the old one's rooms
    assert client.call("join", "r") == {"rooms": sorted([client.sid(), "r"])}


def test_close_connection_is_final_then_an_explicit_reconnect(make_client, interop, transport):
    client, boxes = new_client(make_client, interop, transport, events=("connect", "disconnect"), **FAST_RECONNECT)
    other, _ = new_client(make_client, interop, transport)
    boxes["connect"].get()
    first_sid = client.sid()

    client.emit("close-connection")
    assert boxes["disconnect"].get(3) == (socketio.Client.reason.SERVER_DISCONNECT,)
    # a server-side disconnect is final: no automatic reconnection
    boxes["connect"].expect_none(0.8)
    assert not client.connected

    welcome = open_client(client, boxes, interop, transport)
    assert welcome["sid"] != first_sid
    assert client.call("echo", "reconnected") == "reconnected"
    # the other client's connection was not touched
    assert other.connected
    assert other.call("echo", "other ok") == "other ok"

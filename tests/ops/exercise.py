#!/usr/bin/env python3
"""Drive a running `riptide` node (fixture mode) so that the series an
operator looks at exist, then save its /metrics scrape.

    exercise.py PORT OUT [--cluster] [--pid PID]

Most labelled families appear only once something happened (a disconnect
reason, a bad input kind, a refused CONNECT...), so this opens Engine.IO
sessions over long-polling (standard library only) and does, on purpose:
a CONNECT, joins (the second over socketio.max_rooms_per_socket = 2: an
event refused), an echo, a publish (stored with recovery on), a CONNECT to an
unknown namespace, a request with an unknown sid, a recovery attempt with a
bogus private id, and a close. It waits for the mailbox probe to have run on
the open session. With --cluster it also waits until the broker is up and a
round trip to it was measured. Exit status 1 (and why) if the node does not
answer as expected, or if process PID (the node) exits before it answers.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

WAIT = 10.0


class Node:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def http(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", "text/plain;charset=UTF-8")
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        status, body = self.http("GET", "/metrics")
        if status != 200:
            fail(f"GET /metrics answered {status}")
        return body

    def value(self, series):
        """The value of one series line of /metrics, or None."""
        for line in self.metrics().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_value(self, series, at_least):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            v = self.value(series)
            if v is not None and v >= at_least:
                return v
            time.sleep(0.1)
        fail(f"{series} did not reach {at_least} within {WAIT}s (last: {self.value(series)})")


class Session:
    """One Engine.IO session over long-polling."""

    def __init__(self, node):
        self.node = node
        status, body = node.http("GET", "/socket.io/?EIO=4&transport=polling")
        if status != 200 or not body.startswith("0"):
            fail(f"handshake: {status} {body!r}")
        self.sid = json.loads(body[1:])["sid"]

    def path(self):
        return f"/socket.io/?EIO=4&transport=polling&sid={self.sid}"

    def post(self, *packets):
        status, body = self.node.http("POST", self.path(), "\x1e".join(packets).encode())
        if status != 200:
            fail(f"POST {packets!r}: {status} {body!r}")

    def expect(self, prefix):
        """GET until a packet starting with `prefix` arrives; returns it."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            status, body = self.node.http("GET", self.path())
            if status != 200:
                fail(f"GET while waiting for {prefix!r}: {status} {body!r}")
            for packet in body.split("\x1e"):
                if packet == "2":
                    self.post("3")
                elif packet.startswith(prefix):
                    return packet
        fail(f"no packet starting with {prefix!r} within {WAIT}s")


def fail(why):
    print(f"exercise.py: {why}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) < 3:
        fail("usage: exercise.py PORT OUT [--cluster]")
    node = Node(int(sys.argv[1]))
    out = sys.argv[2]
    rest = sys.argv[3:]
    cluster = "--cluster" in rest
    pid = int(rest[rest.index("--pid") + 1]) if "--pid" in rest else None

    deadline = time.monotonic() + 20
    while True:
        try:
            if node.http("GET", "/health")[0] == 200:
                break
        except OSError:
            pass
        if pid is not None:
            try:
                os.kill(pid, 0)
            except OSError:
                fail(f"the node (pid {pid}) exited before it answered GET /health")
        if time.monotonic() > deadline:
            fail("the node did not answer GET /health within 20s")
        time.sleep(0.05)

    a = Session(node)
    a.post("40")
    a.expect("40{")
    a.post('421["join","lobby"]')
    a.expect("431")
    # Over max_rooms_per_socket (2, its own room counts): refused, counted.
    a.post('422["join","other"]')
    a.expect("432")
    a.post('423["echo","ops"]')
    a.expect('433["ops"]')
    a.post('42["publish","lobby","hello"]')
    a.expect('42["msg","hello"')
    a.post("40/nope,")
    a.expect("44/nope,")
    status, _ = node.http("GET", "/socket.io/?EIO=4&transport=polling&sid=bogus")
    if status != 400:
        fail(f"an unknown sid answered {status}, not 400")

    b = Session(node)
    b.post('40{"pid":"bogus","offset":"bogus"}')
    b.expect("40{")
    a.post("1")  # close: a session closed, a socket disconnected

    # The mailbox probe ticks every second; `b` stays open meanwhile.
    node.wait_value('riptide_actor_mailbox_delay_seconds_count{kind="connection"}', 1)
    node.wait_value('riptide_engine_session_duration_seconds_count{transport="polling"}', 1)
    if cluster:
        node.wait_value("riptide_adapter_up", 1)
        node.wait_value('riptide_adapter_broker_rtt_seconds_count{adapter="nats"}', 1)

    with open(out, "w") as f:
        f.write(node.metrics())


if __name__ == "__main__":
    main()

"""One blocking interface over python-socketio's two clients, so that each
interop test is written once and run with both.

`SyncDriver` is `socketio.Client` itself (its own threads, websocket-client
and requests). `AsyncDriver` runs a `socketio.AsyncClient` (aiohttp) on an
asyncio event loop in a thread of its own and waits for each of its
coroutines; its handlers are registered as coroutine functions, so they go
through the client's `await handler(...)` path as an asyncio application's
would. A handler's return value is its ack (a tuple: several arguments), in
both.
"""

import asyncio
import queue
import threading

import socketio

KINDS = ["sync", "async"]
# Longest wait for one client call (connect, call, disconnect).
CALL_TIMEOUT_S = 10


class Inbox:
    """What a handler received: one tuple of arguments per call."""

    def __init__(self, what):
        self.what = what
        self._q = queue.Queue()

    def put(self, *args):
        self._q.put(args)

    def get(self, timeout=5):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {self.what} within {timeout} s") from None

    def expect_none(self, within=0.5):
        try:
            got = self._q.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected {self.what}: {got!r}")


class _Driver:
    """What both drivers read straight off their client (`self.sio`)."""

    @property
    def connected(self):
        return self.sio.connected

    def sid(self, namespace="/"):
        return self.sio.get_sid(namespace)

    def transport(self):
        return self.sio.transport()


class SyncDriver(_Driver):
    kind = "sync"

    def __init__(self, **options):
        self.sio = socketio.Client(**options)

    def on(self, event, handler, namespace="/"):
        self.sio.on(event, handler, namespace=namespace)

    def connect(self, url, **kwargs):
        self.sio.connect(url, wait_timeout=5, **kwargs)

    def emit(self, event, data=None, namespace="/"):
        self.sio.emit(event, data, namespace=namespace)

    def call(self, event, data=None, namespace="/", timeout=5):
        return self.sio.call(event, data, namespace=namespace, timeout=timeout)

    def disconnect(self):
        self.sio.disconnect()

    def close(self):
        # Disconnects, or stops (and waits for) a reconnection loop.
        self.sio.shutdown()


class AsyncDriver(_Driver):
    kind = "async"

    def __init__(self, **options):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asyncio-client", daemon=True)
        self._thread.start()

        async def build():
            return socketio.AsyncClient(**options)

        self.sio = self._run(build())

    def _run(self, coro, timeout=CALL_TIMEOUT_S):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def on(self, event, handler, namespace="/"):
        async def coroutine_handler(*args):
            return handler(*args)

        self.sio.on(event, coroutine_handler, namespace=namespace)

    def connect(self, url, **kwargs):
        self._run(self.sio.connect(url, wait_timeout=5, **kwargs))

    def emit(self, event, data=None, namespace="/"):
        self._run(self.sio.emit(event, data, namespace=namespace))

    def call(self, event, data=None, namespace="/", timeout=5):
        return self._run(self.sio.call(event, data, namespace=namespace, timeout=timeout), timeout + 2)

    def disconnect(self):
        self._run(self.sio.disconnect())

    def close(self):
        try:
            self._run(self.sio.shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()


def make_driver(kind, **options):
    return {"sync": SyncDriver, "async": AsyncDriver}[kind](**options)

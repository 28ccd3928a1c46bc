"""Fixtures of the python-socketio interop tests.

`server` starts the riptide binary ($RIPTIDE_BIN, default
<repo>/target/debug/riptide) in service mode on a free port for the session
(test_service.py). `interop` starts the interop server
($RIPTIDE_INTEROP_BIN, default <repo>/target/debug/examples/interop, see
examples/interop.rs) for the session, and `own_interop` one for a single test
that may kill and restart it (test_interop.py). Each runs with cwd = the
repository root, is ready once GET /health = 200, is killed at the end, and
prints its output when a test failed. `make_client` (drivers.py) is the
client factory, parametrized over the sync and the asyncio client.
"""

import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

import jwt
import pytest
import requests

from drivers import KINDS, make_driver

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("RIPTIDE_BIN", str(REPO / "target" / "debug" / "riptide"))
INTEROP_BIN = os.environ.get("RIPTIDE_INTEROP_BIN", str(REPO / "target" / "debug" / "examples" / "interop"))
SECRET = "riptide-interop-hmac-secret-0123456789abcdef"
API_KEY = "riptide-interop-api-key-0123456789"
OTHER_SECRET = "a-different-secret-of-at-least-32-bytes!!"
HEALTH_TIMEOUT_S = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_s():
    return int(time.time())


def mint(sub, key=SECRET, alg="HS256", exp_in=3600, **claims):
    """An HS256 JWT for `sub` (iat now, exp now + exp_in; `claims` override)."""
    payload = {"sub": sub, "iat": now_s(), "exp": now_s() + exp_in, **claims}
    return jwt.encode(payload, key, algorithm=alg)


class Process:
    """A server binary on a fixed port: start() (again after kill() or
    stop(), on the same port), its output in one log file across restarts."""

    def __init__(self, bin_path, env, port):
        if not os.access(bin_path, os.X_OK):
            pytest.fail(f"no server binary at {bin_path} (build it, or set RIPTIDE_BIN / RIPTIDE_INTEROP_BIN)")
        self.bin = bin_path
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None
        self._log = tempfile.NamedTemporaryFile(prefix="riptide-py-", suffix=".log", delete=False)
        self.log_path = self._log.name

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [self.bin], cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + HEALTH_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.bin} exited with {self.proc.returncode} before becoming healthy:\n{self.logs()[-4000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail(f"{self.bin} did not answer GET /health within {HEALTH_TIMEOUT_S} s:\n{self.logs()[-4000:]}")
            time.sleep(0.05)

    def kill(self, sig=signal.SIGKILL):
        """Kill the process (a crash by default) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def logs(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def close(self, failed):
        self.stop()
        if failed:
            print(f"\n===== {self.bin} output (port {self.port}) =====\n{self.logs()[-20000:]}\n===== end =====")
        self._log.close()
        os.unlink(self.log_path)


class Server(Process):
    """A riptide node in service mode, with its HTTP API."""

    def __init__(self, port):
        env = {
            **os.environ,
            "RIPTIDE__APP__MODE": "service",
            "RIPTIDE__AUTH__HMAC_SECRET": SECRET,
            "RIPTIDE__API__KEY": API_KEY,
            "RIPTIDE__AUTH__REFRESH_AHEAD_MS": "1000",
            "RIPTIDE__CHANNELS__PUBLIC": "news,alerts.*,chat.*",
            "RIPTIDE__CHANNELS__CLIENT_PUBLISH": "chat.*",
            "RIPTIDE__SERVER__PORT": str(port),
        }
        super().__init__(BIN, env, port)

    def api(self, method, path, body=None, key=API_KEY):
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        res = requests.request(method, self.url + path, json=body, headers=headers, timeout=10)
        try:
            data = res.json()
        except ValueError:
            data = res.text
        return res.status_code, data

    def publish(self, **body):
        status, data = self.api("POST", "/api/publish", body)
        assert status == 200 and data.get("ok") is True, f"POST /api/publish {body} -> {status} {data}"
        return data


# python-engineio's clients (4.15) lose their close packet over polling when
# disconnect() comes while a POST is still unanswered: the write loop sees
# the state "disconnecting" when that POST returns and exits without sending
# the queued close, so the long-poll GET the client then waits for is only
# answered by the server's next ping. A 1 s ping interval keeps that wait
# short; the server still ends the session at its ping timeout.
INTEROP_ENV = {"RIPTIDE__ENGINE__PING_INTERVAL_MS": "1000", "RIPTIDE__ENGINE__PING_TIMEOUT_MS": "2000"}


def interop_process(port=None):
    port = port or free_port()
    return Process(INTEROP_BIN, {**os.environ, **INTEROP_ENV, "PORT": str(port)}, port)


@pytest.fixture(scope="session")
def server(request):
    srv = Server(free_port())
    try:
        yield srv.start()
    finally:
        srv.close(request.session.testsfailed)


@pytest.fixture(scope="session")
def interop(request):
    """The interop server shared by the tests that leave it running."""
    srv = interop_process()
    try:
        yield srv.start()
    finally:
        srv.close(request.session.testsfailed)


@pytest.fixture
def own_interop(request):
    """An interop server of this test alone: it may kill() and start() it."""
    srv = interop_process()
    failed_before = request.session.testsfailed
    try:
        yield srv.start()
    finally:
        srv.close(request.session.testsfailed > failed_before)


@pytest.fixture(params=KINDS)
def make_client(request):
    """make_client(**client_options) -> a driver of socketio.Client ("sync")
    or socketio.AsyncClient ("async"); every one is disconnected at the end."""
    made = []

    def make(**options):
        driver = make_driver(request.param, **options)
        made.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in made:
            driver.close()

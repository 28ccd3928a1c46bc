"""Fixtures of the python-socketio interop tests of service mode.

`server` starts the riptide binary ($RIPTIDE_BIN, default
<repo>/target/debug/riptide) in service mode on a free port with cwd = the
repository root, waits for GET /health = 200, and kills it at the end of the
session (its output is printed when a test failed).
"""

import os
import pathlib
import socket
import subprocess
import tempfile
import time

import jwt
import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("RIPTIDE_BIN", str(REPO / "target" / "debug" / "riptide"))
SECRET = "riptide-interop-hmac-secret-0123456789abcdef"
API_KEY = "riptide-interop-api-key-0123456789"
OTHER_SECRET = "a-different-secret-of-at-least-32-bytes!!"


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


class Server:
    def __init__(self, port, proc, log_path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log_path = log_path

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

    def logs(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def server(request):
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"no riptide binary at {BIN} (build it, or set RIPTIDE_BIN)")
    port = free_port()
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
    log = tempfile.NamedTemporaryFile(prefix="riptide-py-", suffix=".log", delete=False)
    proc = subprocess.Popen([BIN], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(port, proc, log.name)
    deadline = time.time() + 20
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"riptide exited with {proc.returncode} before becoming healthy:\n{srv.logs()[-4000:]}")
            try:
                if requests.get(srv.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail(f"riptide did not answer GET /health within 20 s:\n{srv.logs()[-4000:]}")
            time.sleep(0.05)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if request.session.testsfailed:
            print(f"\n===== riptide output (port {port}) =====\n{srv.logs()[-20000:]}\n===== end =====")
        log.close()
        os.unlink(log.name)

"""A small JupyterHub client for tests: log in through the form, start a server, run code
in a kernel over its websocket. Talks to the hub only through the proxy."""

from __future__ import annotations

import json
import ssl
import time
import uuid
from typing import Any

import requests
import websocket


class HubError(AssertionError):
    pass


class HubUser:
    def __init__(self, base: str, name: str, password: str, verify: bool | str = True):
        """``verify``: as in requests: False for a self-signed hub, or a CA bundle path."""
        self.base = base.rstrip("/")
        self.name = name
        self.password = password
        self.verify = verify
        self.s = requests.Session()
        self.s.verify = verify
        # the hub is local: no proxy, and no REQUESTS_CA_BUNDLE overriding ``verify``
        self.s.trust_env = False
        self.token: str | None = None

    # --- hub
    def login(self, expect_ok: bool = True) -> requests.Response:
        """The login form as a browser posts it; returns the final response."""
        r = self.s.get(f"{self.base}/hub/login", timeout=30)
        r.raise_for_status()
        xsrf = self.s.cookies.get("_xsrf", path="/hub/")
        r = self.s.post(f"{self.base}/hub/login?next=", timeout=60, allow_redirects=False,
                        data={"username": self.name, "password": self.password, "_xsrf": xsrf})
        ok = r.status_code == 302 and any(
            c.name.startswith("jupyterhub-session-id") or c.name == "jupyterhub-hub-login"
            for c in self.s.cookies)
        if expect_ok and not ok:
            raise HubError(f"login of {self.name} failed: {r.status_code} {r.text[:300]}")
        return r

    def sign_in(self, start_server: bool = False) -> HubUser:
        """Log in through the form, get an API token, optionally start the server."""
        self.login()
        self.make_token()
        if start_server:
            self.start_server()
        return self

    def unix_user(self) -> str:
        """Which unix account the user's kernel runs as."""
        return self.execute("import getpass; print(getpass.getuser())").strip()

    def make_token(self) -> str:
        xsrf = self.s.cookies.get("_xsrf", path="/hub/")
        r = self.s.post(f"{self.base}/hub/api/users/{self.name}/tokens", timeout=30,
                        headers={"X-XSRFToken": xsrf or "", "Referer": f"{self.base}/hub/"},
                        json={"note": "integration test", "expires_in": 3600})
        if r.status_code != 201:
            raise HubError(f"token for {self.name}: {r.status_code} {r.text[:300]}")
        self.token = r.json()["token"]
        return self.token

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {self.token}"
        return requests.request(method, f"{self.base}{path}", headers=headers,
                                timeout=kw.pop("timeout", 60), verify=self.verify, **kw)

    def allow(self, *names: str) -> None:
        """As an admin, add users to the hub (the admin page's "Add users"): with the
        default authenticator only names the hub knows may claim a first password."""
        r = self.api("POST", "/hub/api/users", json={"usernames": list(names)})
        if r.status_code not in (201, 409):  # 409: all of them exist already
            raise HubError(f"adding users {names}: {r.status_code} {r.text[:300]}")

    def start_server(self, timeout: float = 300) -> float:
        """Ask the hub for the server and wait until it answers through the proxy."""
        t0 = time.monotonic()
        r = self.api("POST", f"/hub/api/users/{self.name}/server")
        if r.status_code not in (201, 202, 400):  # 400: already running
            raise HubError(f"spawn {self.name}: {r.status_code} {r.text[:300]}")
        while time.monotonic() - t0 < timeout:
            model = self.api("GET", f"/hub/api/users/{self.name}").json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                if self.api("GET", f"/user/{self.name}/api/status").status_code == 200:
                    return time.monotonic() - t0
            elif not model.get("pending") and not server:
                raise HubError(f"server of {self.name} stopped while starting: {model}")
            time.sleep(0.25)
        raise HubError(f"server of {self.name} not ready after {timeout} s")

    # --- kernel
    def execute(self, code: str, timeout: float = 60) -> str:
        """Start a kernel, run ``code``, return its text/plain result (or stdout)."""
        r = self.api("POST", f"/user/{self.name}/api/kernels", json={"name": "python3"})
        if r.status_code != 201:
            raise HubError(f"kernel for {self.name}: {r.status_code} {r.text[:300]}")
        kernel_id = r.json()["id"]
        try:
            return self._run_in_kernel(kernel_id, code, timeout)
        finally:
            self.api("DELETE", f"/user/{self.name}/api/kernels/{kernel_id}")

    def _sslopt(self) -> dict[str, Any]:
        if self.verify is False:
            return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        if isinstance(self.verify, str):
            return {"ca_certs": self.verify}
        return {}

    def _run_in_kernel(self, kernel_id: str, code: str, timeout: float) -> str:
        ws_base = self.base.replace("http://", "ws://").replace("https://", "wss://")
        ws = websocket.create_connection(
            f"{ws_base}/user/{self.name}/api/kernels/{kernel_id}/channels",
            header=[f"Authorization: token {self.token}"], timeout=timeout, sslopt=self._sslopt())
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": self.name, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False},
            }))
            out = []
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                # frame by frame, pings included: the server's websocket pings would keep a
                # plain recv() waiting forever once the kernel died and no reply can come
                ws.settimeout(left)
                opcode, frame = ws.recv_data_frame(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise HubError("the server closed the kernel's websocket")
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    continue
                msg = json.loads(frame.data)
                if (msg.get("msg_type") == "status" and msg.get("content", {}).get(
                        "execution_state") in ("restarting", "dead")):
                    # the server's own notice (no parent): the kernel died, no reply comes
                    raise HubError(f"the kernel died (the server says "
                                   f"{msg['content']['execution_state']})")
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "execute_result":
                    return msg["content"]["data"]["text/plain"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                if kind == "error":
                    raise HubError(f"kernel error: {msg['content']['ename']}: "
                                   f"{msg['content']['evalue']}")
                if kind == "status" and msg["content"]["execution_state"] == "idle" and out:
                    return "".join(out)
            raise HubError(f"no reply from the kernel in {timeout} s")
        finally:
            ws.close()


def wait_for_hub(base: str, timeout: float = 120, verify: bool | str = True) -> float:
    """Poll the hub's API through the proxy until it answers 200; seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if requests.get(base.rstrip("/") + "/hub/api/", timeout=5,
                            verify=verify).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise HubError(f"the hub did not answer at {base} within {timeout} s")


class RequestLoop:
    """GET a user's server through the proxy every ``interval`` seconds in a thread, for as
    long as the ``with`` block runs; ``statuses`` holds each answer (-1: no answer)."""

    def __init__(self, user: HubUser, path: str, interval: float = 0.05,
                 new_connections: bool = False):
        """``new_connections``: each request on a connection of its own (``Connection:
        close``), as a new visitor's would be, rather than reusing a kept-alive one."""
        import threading

        self.user, self.path, self.interval = user, path, interval
        self.headers = {"Connection": "close"} if new_connections else {}
        self.statuses: list[int] = []
        #: (index in statuses, the error) of each request that got no answer
        self.errors: list[tuple[int, str]] = []
        #: the longest a request took (s), answered or not
        self.slowest = 0.0
        #: when each request began and ended (time.monotonic())
        self.spans: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.statuses.append(self.user.api("GET", self.path, timeout=10,
                                                   headers=dict(self.headers)).status_code)
            except requests.RequestException as e:
                self.errors.append((len(self.statuses), f"{type(e).__name__}: {e}"[:300]))
                self.statuses.append(-1)
            self.spans.append((t0, time.monotonic()))
            self.slowest = max(self.slowest, self.spans[-1][1] - t0)
            time.sleep(self.interval)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def in_flight(self, at: float) -> list[int]:
        """The requests (indexes) that had begun and not ended at ``at``."""
        return [i for i, (t0, t1) in enumerate(self.spans) if t0 <= at <= t1]

    @property
    def failed(self) -> list[int]:
        return [s for s in self.statuses if s != 200]

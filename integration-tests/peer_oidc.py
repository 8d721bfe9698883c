"""A real OpenID Connect provider for the tests: npm's oidc-provider (OpenID Certified), run
by oidc/provider.mjs on 127.0.0.1:PORT and stopped by the PID of the process started here.

Login is a plain HTML form (inputs ``username`` and ``password``, button ``#login``);
consent is granted automatically. Userinfo gives ``sub``, ``preferred_username``, ``email``
and ``groups`` (a list) for the scopes "openid profile email" (and "groups")."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from peers import stop_process

HERE = Path(__file__).resolve().parent / "oidc"


class OidcProvider:
    """One static confidential client (client_secret_basic, authorization_code, PKCE S256
    accepted) and ``users``: {username: {"password": ..., "groups": [...], "email": ...}}."""

    def __init__(self, port: int, client_id: str, client_secret: str, redirect_uri: str,
                 users: dict[str, dict[str, Any]], *, require_pkce: bool = False,
                 timeout: float = 30):
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"{HERE}/node_modules is missing: run-tests.sh runs `npm ci` in "
                               "integration-tests/oidc (or run it there by hand)")
        if shutil.which("node") is None:
            raise RuntimeError("node is not installed (run-tests.sh installs it)")
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uri = redirect_uri
        self.dir = Path(tempfile.mkdtemp(prefix="hardway-oidc-"))
        config = self.dir / "config.json"
        config.write_text(json.dumps({
            "port": port, "issuer": self.issuer, "require_pkce": require_pkce, "users": users,
            "client": {"client_id": client_id, "client_secret": client_secret,
                       "redirect_uris": [redirect_uri]},
        }))
        self.log = self.dir / "provider.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(["node", "provider.mjs", str(config)], cwd=HERE,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout)
            with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration",
                                        timeout=10) as resp:
                self.metadata: dict[str, Any] = json.load(resp)
        except BaseException:
            self.stop()
            raise
        self.authorize_url: str = self.metadata["authorization_endpoint"]
        self.token_url: str = self.metadata["token_endpoint"]
        self.userinfo_url: str = self.metadata["userinfo_endpoint"]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready" in self.log.read_text(errors="replace").splitlines():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"oidc provider exited with {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace"))
            time.sleep(0.05)
        raise RuntimeError(f"oidc provider not ready on {self.issuer} after {timeout} s:\n"
                           + self.log.read_text(errors="replace"))

    def output(self) -> str:
        """What the provider printed so far (for a failing test's message)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

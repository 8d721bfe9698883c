"""firstuseauthenticator 1.1.1 as the hub runs it (``hardway_plugins.auth.firstuse_hub``).

What this subclass changes, and why:

- **Error pages render.** Upstream's login handler ``_render(login_error, username)``
  refused the ``sync=True`` (and message) keywords JupyterHub 6's
  ``LoginHandler.render_template`` passes when it turns an error page into the login
  form, so every form error (an expired XSRF token...) was an empty 403.
- **bcrypt runs in threads.** Each hash or check takes ~0.2 s of CPU; upstream ran it on
  the hub's event loop, which then answered nothing else (50 first logins: 3-5 s
  stretches of silence). bcrypt releases the GIL, so a small pool of threads keeps the
  loop free. The dbm file is only touched on the loop thread, never concurrently.
- **Two first logins of one name**: the first to store its hash wins; the other is
  checked against that hash (the re-check follows the hashing, with no await between
  the re-check and the write).
- **No password is stored for a name that may not log in** (blocked, or not on the
  allow list): upstream stored it first and refused afterwards.
- **Passwords longer than bcrypt's 72 bytes** are refused with a message instead of a 500
  (bcrypt >= 5 raises on them).
- The database is used under ``<dbm_path>.lock`` (flock), shared with ``hardway install``,
  which gives admins their first password while the hub may be running.

Configure it through the ``FirstUseAuthenticator`` section: traitlets config follows the
class hierarchy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dbm
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import bcrypt
from firstuseauthenticator import FirstUseAuthenticator
from firstuseauthenticator.firstuseauthenticator import (
    TEMPLATE_DIR,
    CustomLoginHandler,
    ResetPasswordHandler,
)
from hardway_plugins.auth.firstuse import (
    MAX_PASSWORD_BYTES,
    create_atomically,
    lock_passwords_async,
)
from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.auth import Authenticator
from jupyterhub.handlers import LoginHandler
from jupyterhub.utils import maybe_future
from tornado import web

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    """One thread per usable CPU for bcrypt: more would only queue inside the kernel."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0))),
                                   thread_name_prefix="firstuse-bcrypt")
    return _pool


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_threads(), fn, *args)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a password over 72 bytes, or a stored value that is no bcrypt hash
        return False


class HardwayLoginHandler(CustomLoginHandler):
    """Upstream's handler, with ``_render`` passing on what JupyterHub passes to it."""

    def _render(self, login_error: str | None = None, username: str | None = None,
                **kwargs: Any) -> Any:
        if self.custom_login_error:
            login_error = self.custom_login_error
        # with sync=True (an error page) this returns the page, else an awaitable
        return LoginHandler._render(self, login_error, username, **kwargs)


class HardwayResetPasswordHandler(ResetPasswordHandler):
    """/hub/auth/change-password, awaiting the authenticator's (threaded) reset."""

    def _register_template_path(self) -> None:
        # upstream wraps the loader again on every request (a per-handler flag), so the
        # chain of loaders grows without end; add firstuse's templates once per env
        env = self.settings["jinja2_env"]
        if not getattr(env, "_hardway_firstuse_templates", False):
            env.loader = ChoiceLoader([env.loader, FileSystemLoader([TEMPLATE_DIR])])
            env._hardway_firstuse_templates = True

    @web.authenticated
    async def post(self) -> None:
        self._register_template_path()
        new_password = self.get_body_argument("password", strip=False)
        msg = await maybe_future(
            self.authenticator.reset_password(self.current_user.name, new_password))
        html = await self.render_template(
            "reset.html", result=True, alert="success" if "success" in msg else "danger",
            result_message=msg)
        self.finish(html)


class HardwayFirstUseAuthenticator(FirstUseAuthenticator):
    @contextlib.asynccontextmanager
    async def _passwords(self) -> AsyncIterator[Any]:
        """The password database under its lock. Do not await inside the block: the lock
        is held and the loop keeps running."""
        fd = await lock_passwords_async(self.dbm_path)
        try:
            if dbm.whichdb(self.dbm_path) is None:  # none yet: never a half-made one
                create_atomically(Path(self.dbm_path))
            with dbm.open(self.dbm_path, "c", 0o600) as db:
                yield db
        finally:
            os.close(fd)

    async def _stored(self, username: str) -> bytes | None:
        async with self._passwords() as db:
            return db.get(username.encode("utf8"))

    async def _claim(self, username: str, hashed: bytes) -> bytes:
        """Store ``hashed`` unless a hash is stored by now; return the stored one."""
        async with self._passwords() as db:
            key = username.encode("utf8")
            current = db.get(key)
            if current is None:
                db[key] = hashed
                return hashed
            return current

    def _password_problem(self, password: str) -> str | None:
        if not self._validate_password(password):
            return ("Password too short! Please choose a password at least "
                    f"{self.min_password_length} characters long.")
        if len(password.encode("utf8")) > MAX_PASSWORD_BYTES:
            return f"Password too long! Please choose one of at most {MAX_PASSWORD_BYTES} bytes."
        return None

    async def _may_log_in(self, username: str) -> bool:
        """The checks JupyterHub makes after authenticate(), made before a first password
        is stored, so a refused name leaves nothing behind."""
        if not await maybe_future(self.check_blocked_users(username, None)):
            return False
        return bool(self.allow_all or await maybe_future(self.check_allowed(username, None)))

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        if not self.create_users and not self._user_exists(username):
            self.log.warning("firstuse: %r is not a user of this hub (create_users is off)",
                             username[:64])
            return None
        stored = await self._stored(username)
        if stored is None:
            problem = self._password_problem(password)
            if problem is not None:
                if handler is not None:
                    handler.custom_login_error = problem
                self.log.error(problem)
                return None
            if not await self._may_log_in(username):
                return None
            hashed = await in_thread(bcrypt.hashpw, password.encode("utf8"), bcrypt.gensalt())
            stored = await self._claim(username, hashed)
            if stored == hashed:
                self.log.info("firstuse: %s set their first password", username)
                return username
        if await in_thread(_checkpw, password.encode("utf8"), stored):
            return username
        return None

    async def reset_password(self, username: str, new_password: str) -> str:  # type: ignore[override]
        problem = self._password_problem(new_password)
        if problem is not None:
            self.log.error(problem)
            return problem
        hashed = await in_thread(bcrypt.hashpw, new_password.encode("utf8"), bcrypt.gensalt())
        async with self._passwords() as db:
            db[username.encode("utf8")] = hashed
        msg = "Your password has been changed successfully!"
        self.log.info("firstuse: %s changed their password", username)
        return msg

    async def delete_user(self, user: Any) -> None:  # type: ignore[override]
        """Forget the user's password (so the name can be given out again) and, unlike
        upstream, also drop them from ``allowed_users``."""
        async with self._passwords() as db:
            with contextlib.suppress(KeyError):
                del db[user.name.encode("utf8")]
        Authenticator.delete_user(self, user)

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [
            (r"/login", HardwayLoginHandler),
            (r"/auth/change-password", HardwayResetPasswordHandler),
        ]

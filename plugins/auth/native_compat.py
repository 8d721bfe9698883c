"""nativeauthenticator 1.3.0 on JupyterHub 6: its login handler still times logins with
``self.statsd``, which JupyterHub 6 removed, so every login answered 500. This subclass
gives its handlers a do-nothing ``statsd`` until nativeauthenticator catches up."""

from __future__ import annotations

from typing import Any

from nativeauthenticator import NativeAuthenticator


class _NoStats:
    """Accepts the statsd calls nativeauthenticator makes and records nothing."""

    def timer(self, *args: Any, **kwargs: Any) -> _NoStats:
        return self

    def start(self) -> _NoStats:
        return self

    def stop(self, *args: Any, **kwargs: Any) -> None:
        return None

    def incr(self, *args: Any, **kwargs: Any) -> None:
        return None


def _with_statsd(handler: type) -> type:
    if hasattr(handler, "statsd"):
        return handler
    return type(handler.__name__, (handler,), {"statsd": _NoStats()})


class HardwayNativeAuthenticator(NativeAuthenticator):
    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [(path, _with_statsd(h)) for path, h in super().get_handlers(app)]

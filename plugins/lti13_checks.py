"""ltiauthenticator 1.6.3's LTI 1.3 callback, with the nonce made single-use on the hub.

Upstream binds a launch to the browser that started it: the login initiation stores a random
nonce state and the OAuth state in two encrypted cookies (valid one day), and the callback
checks ``id_token.nonce == sha256(cookie)`` and ``state == cookie``, then clears both
cookies. Nothing is remembered on the hub, so whoever holds the POSTed id_token and state
plus those two cookies (copied from a browser, a proxy log, a shared machine) can POST them
again and is logged in again, each time, until the id_token expires. The IMS security
framework asks a tool to refuse a nonce it has already received; this subclass does: a
nonce is accepted once, and remembered until no id_token carrying it could pass the
exp/max_age checks anyway. A replay is refused with 400, like upstream's nonce mismatch.

The memory is the hub process's (JupyterHub runs one); a hub restart forgets it, which
leaves at most the id_token's max_age (600 s by default) open for a replay after a restart.

Wire it as ``JupyterHub.authenticator_class =
"hardway_plugins.lti13_checks.HardwayLTI13Authenticator"``; it takes the same settings as
LTI13Authenticator (``c.LTI13Authenticator.*`` still apply: traitlets config follows the
class hierarchy).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler
from ltiauthenticator.lti13.validator import LTI13LaunchValidator
from tornado.web import HTTPError


class NonceLedger:
    """Nonces already accepted, each kept until a given time; safe across threads."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, keep_until: float, now: float | None = None) -> bool:
        """True the first time ``nonce`` is seen (and until ``keep_until``), else False."""
        now = time.time() if now is None else now
        with self._lock:
            for seen in [n for n, t in self._until.items() if t < now]:
                del self._until[seen]
            if nonce in self._until:
                return False
            self._until[nonce] = keep_until
            return True

    def __len__(self) -> int:
        return len(self._until)


def keep_until(id_token: dict[str, Any], max_age: int, leeway: int) -> float:
    """The last moment an id_token with these claims could still pass upstream's checks:
    PyJWT refuses it after exp + leeway, ltiauthenticator after iat + max_age + leeway."""
    limits = [float(id_token[c]) + extra for c, extra in (("exp", 0), ("iat", max_age))
              if isinstance(id_token.get(c), int | float)]
    return (min(limits) if limits else time.time() + max_age) + leeway + 1


class HardwayLTI13CallbackHandler(LTI13CallbackHandler):
    """Upstream's callback, refusing an id_token whose nonce this hub has already accepted."""

    def check_nonce(self, id_token: dict[str, Any]) -> None:
        super().check_nonce(id_token)  # bound to this browser's cookie, or 400
        ledger = getattr(self.authenticator, "used_nonces", None)
        if not isinstance(ledger, NonceLedger):
            raise HTTPError(500, "the LTI 1.3 authenticator keeps no nonce ledger")
        validator = LTI13LaunchValidator(parent=self.app)
        until = keep_until(id_token, validator.max_age, validator.time_leeway)
        if not ledger.claim(str(id_token.get("nonce")), until):
            self.log.warning("LTI 1.3 id_token replayed: nonce already used")
            raise HTTPError(400, "OAuth nonce already used")


class HardwayLTI13Authenticator(LTI13Authenticator):
    """LTI13Authenticator whose callback accepts each nonce once."""

    callback_handler = HardwayLTI13CallbackHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.used_nonces = NonceLedger()

"""The proxy's ports are systemd's sockets: the order in which install, reload, rollback
and restore bring them up (on a booted host: integration-tests/test_https.py kills and
restarts Traefik under a request loop)."""

from __future__ import annotations

from hardway.ops.install import PROXY_UNIT, cycle_proxy_sockets, proxy_sockets, services_step

HTTP, REDIRECT = "jupyterhub-proxy-443.socket", "jupyterhub-proxy-80.socket"


class Systemd:
    """systemctl as far as these calls go: unit states, and every command in order. It
    refuses, as systemd does, to start a socket whose service runs."""

    def __init__(self, active: set[str], enabled: set[str] | None = None) -> None:
        self.active = set(active)
        self.enabled = set(enabled if enabled is not None else active)
        self.calls: list[tuple[str, str]] = []

    def unit_state(self, unit: str) -> dict[str, str]:
        return {"ActiveState": "active" if unit in self.active else "inactive",
                "UnitFileState": "enabled" if unit in self.enabled else "disabled"}

    def systemctl(self, verb: str, *units: str, check: bool = True) -> None:
        for unit in units:
            self.calls.append((verb, unit))
            if verb in ("start", "restart", "reload-or-restart"):
                if unit.endswith(".socket") and PROXY_UNIT in self.active:
                    raise AssertionError(f"systemd refuses to start {unit}: its service runs")
                self.active.add(unit)
            elif verb == "stop":
                self.active.discard(unit)
            elif verb == "enable":
                self.enabled.add(unit)


def test_the_proxy_restarts_alone_on_sockets_that_are_up_and_unchanged():
    s = Systemd({HTTP, PROXY_UNIT})
    assert cycle_proxy_sockets(s, [HTTP], {PROXY_UNIT}) == []
    assert s.calls == []  # the caller restarts the proxy; its port stays open


def test_a_new_or_changed_socket_starts_with_the_proxy_stopped():
    # an upgrade from before sockets: Traefik holds port 80 itself until it stops
    s = Systemd({PROXY_UNIT})
    assert cycle_proxy_sockets(s, [HTTP, REDIRECT], {HTTP, REDIRECT}) == [HTTP, REDIRECT]
    assert s.calls == [("stop", PROXY_UNIT), ("enable", HTTP), ("restart", HTTP),
                       ("enable", REDIRECT), ("restart", REDIRECT), ("start", PROXY_UNIT)]
    assert s.active == {HTTP, REDIRECT, PROXY_UNIT}


def test_install_starts_the_sockets_before_the_proxy_and_the_hub():
    s = Systemd(set(), set())
    units = [HTTP, "hardway-netpolicy.service", PROXY_UNIT, "jupyterhub.service"]
    said = services_step(s, False, set(), units)
    assert said[0] == f"started {HTTP} and {PROXY_UNIT} on them"
    started = [u for verb, u in s.calls if verb in ("start", "restart")]
    assert started.index(HTTP) < started.index(PROXY_UNIT) < started.index(
        "jupyterhub.service")
    assert [u for verb, u in s.calls if verb in ("start", "restart")].count(PROXY_UNIT) == 1
    assert s.enabled >= {HTTP, PROXY_UNIT, "jupyterhub.service"}


def test_only_the_proxys_sockets_are_cycled():
    units = ["hardway-hub-bridge.socket", HTTP, REDIRECT, PROXY_UNIT]
    assert proxy_sockets(units) == sorted([HTTP, REDIRECT])


def test_a_removed_drop_in_takes_its_directory_when_nothing_else_is_in_it(tmp_path):
    """A port changed: the old socket's drop-in goes, and its directory with it, unless
    the admin keeps a file of their own there."""
    from hardway.apply import transaction as txn

    ours = tmp_path / "jupyterhub-proxy-80.socket.d"
    shared = tmp_path / "jupyterhub-proxy-8000.socket.d"
    for d in (ours, shared):
        d.mkdir()
        (d / "entry-point.conf").write_text("[Socket]\nFileDescriptorName=http\n")
    (shared / "override.conf").write_text("[Socket]\nBacklog=10\n")
    txn.commit([], [ours / "entry-point.conf", shared / "entry-point.conf"], {})
    assert not ours.exists()
    assert sorted(p.name for p in shared.iterdir()) == ["override.conf"]

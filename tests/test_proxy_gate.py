"""The gate's hold on a listening socket, with a real kernel (the booted-host tests in
integration-tests/test_https.py run it in front of Traefik): held, a connection attempt
is dropped (not refused); the gate's own probe ports pass; released, the client's
retried SYN gets in. Attaching the filter takes CAP_NET_ADMIN here: run as root, as CI
does."""

from __future__ import annotations

import json
import socket
import threading
import time

from hardway.apply import proxy_gate as gate


def test_a_held_socket_drops_connection_attempts_until_released():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        gate.hold([listener])
        with socket.socket() as early:
            early.settimeout(0.3)
            try:
                early.connect(("127.0.0.1", port))
                raise AssertionError("a held socket took a connection")
            except TimeoutError:
                pass  # dropped, not refused: the client would send its SYN again
        assert gate.queued(listener) == 0
        # the gate's own probe (from one of its ports) passes while the socket is held
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", gate.PROBE_PORTS[0]))
            probe.settimeout(2)
            probe.connect(("127.0.0.1", port))
            deadline = time.monotonic() + 2
            while gate.queued(listener) != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gate.queued(listener) == 1
            listener.accept()[0].close()
        took: dict[str, float] = {}

        def visitor() -> None:
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                took["s"] = time.monotonic() - t0

        t = threading.Thread(target=visitor)
        t.start()
        time.sleep(0.3)
        gate.release([listener])
        t.join()
        # answered once its SYN came again (Linux: after 1 s), never refused
        assert 0.9 < took["s"] < 3.5, took


def test_the_acme_store_is_read_for_the_name_only(tmp_path):
    store = tmp_path / "acme.json"
    store.write_text(json.dumps({"hardway": {"Certificates": [
        {"domain": {"main": "hub.example.edu", "sans": ["www.hub.example.edu"]}}]}}))
    assert gate.stored(str(store), "hub.example.edu")
    assert gate.stored(str(store), "www.hub.example.edu")
    assert not gate.stored(str(store), "other.example.edu")
    assert not gate.stored(str(tmp_path / "missing.json"), "hub.example.edu")
    store.write_text("{not json")
    assert not gate.stored(str(store), "hub.example.edu")


def test_without_a_command_it_says_how_to_call_it(capsys):
    assert gate.main([]) == 2
    assert "usage: gate.py start" in capsys.readouterr().err

"""Changes that survive a crash: the record, staged writes, what runs vs what is rendered,
owned files, and one writer at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import fill

from hardway.apply import transaction as txn
from hardway.apply.files import locked
from hardway.errors import HardwayError
from hardway.plugin.contract import File

HUB = txn.HUB_UNIT


def f(path: Path, text: str, component: str = "hub", mode: int = 0o600) -> File:
    return File(path, text.encode(), mode, component=component)


def test_a_full_disk_while_staging_changes_nothing(small_fs: Path):
    a, b = small_fs / "a.json", small_fs / "b.toml"
    a.write_text("old a")
    b.write_text("old b")
    fill(small_fs)
    with pytest.raises(HardwayError) as e:
        txn.commit([f(a, "new a" * 10_000), f(b, "new b" * 10_000)], [], {})
    msg = str(e.value)
    assert "no space left" in msg and "nothing was changed" in msg, msg
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in small_fs.iterdir()) == ["a.json", "b.toml", "filler"]


def test_the_record_puts_every_file_back(tmp_path: Path):
    record = tmp_path / "state" / "pending-change.json"
    kept, edited, new, gone = (tmp_path / n for n in ("kept", "edited", "new", "gone"))
    kept.write_text("same")
    edited.write_text("before")
    os.chmod(edited, 0o640)
    gone.write_text("was here")
    pending = txn.begin(record, "config reload", [kept, edited, new, gone])
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    # the change half-happens, then the process dies: the record is all that is left
    edited.write_text("after")
    os.chmod(edited, 0o600)
    new.write_text("created")
    gone.unlink()
    found = txn.load_pending(record)
    assert found is not None and found.op == "config reload" and found.pid == os.getpid()
    lines = txn.restore(found)
    assert edited.read_text() == "before" and edited.stat().st_mode & 0o777 == 0o640
    assert gone.read_text() == "was here" and not new.exists() and kept.read_text() == "same"
    assert sorted(lines) == sorted([f"restored {edited}", f"restored {gone}",
                                    f"removed {new} (new with the undone change)"])
    # a second interruption keeps the oldest state of each file
    edited.write_text("after again")
    again = txn.begin(record, "config reload", [edited], inherited=pending)
    assert txn.restore(again) == [f"restored {edited}"] and edited.read_text() == "before"
    txn.clear(record)
    assert txn.load_pending(record) is None


def test_a_link_planted_before_the_change_is_never_put_back(tmp_path: Path):
    target = tmp_path / "secret"
    target.write_text("root only")
    link = tmp_path / "hub.json"
    link.symlink_to(target)
    pending = txn.begin(tmp_path / "rec.json", "install", [link])
    link.unlink()
    link.write_text("rendered")
    txn.restore(pending)
    assert not link.exists() and target.read_text() == "root only"


def state_files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "manifest.json", tmp_path / "running.json"


def test_a_service_restarts_when_it_runs_other_files_than_the_rendered(tmp_path: Path):
    manifest, running = state_files(tmp_path)
    hub_json, rules = tmp_path / "hub.json", tmp_path / "rules.toml"
    files = [f(hub_json, "v1"), f(rules, "r1", component="proxy-dynamic")]
    txn.commit(files, [], {})
    p = txn.plan(files, [], manifest, running, {HUB: "code1"})
    txn.write_json(manifest, p.owned)
    txn.record_running(running, p.owned, {HUB: "code1"})
    # nothing differs: nothing restarts
    p = txn.plan(files, [], manifest, running, {HUB: "code1"})
    assert txn.to_restart(p, {HUB: "code1"}) == set()
    # a reload wrote v2 and was killed before restarting: the next plan sees no changed
    # file, yet the hub runs v1
    hub_json.write_text("v2")
    files2 = [f(hub_json, "v2"), f(rules, "r1", component="proxy-dynamic")]
    p = txn.plan(files2, [], manifest, running, {HUB: "code1"})
    assert txn.to_restart(p, {HUB: "code1"}) == {HUB}
    # new code in the hub environment restarts it too; a watched file never does
    assert txn.to_restart(p, {HUB: "code2"}) == {HUB}
    rules.write_text("r2")
    txn.record_running(running, p.owned, {HUB: "code1"})
    assert txn.to_restart(txn.plan(files2, [], manifest, running, {HUB: "code1"}),
                          {HUB: "code1"}) == set()


def test_without_a_record_of_what_runs_the_files_on_disk_stand_for_it(tmp_path: Path):
    """Installs from before running.json: a reload that changes nothing restarts nothing."""
    manifest, running = state_files(tmp_path)
    hub_json = tmp_path / "hub.json"
    files = [f(hub_json, "v1")]
    txn.commit(files, [], {})
    p = txn.plan(files, [], manifest, running, {HUB: "code1"})
    assert txn.to_restart(p, {HUB: "code1"}) == set()
    changed = [(f(hub_json, "v2"), "content")]
    p = txn.plan([f(hub_json, "v2")], changed, manifest, running, {HUB: "code1"})
    txn.commit([c for c, _ in changed], [], {})
    assert txn.to_restart(p, {HUB: "code1"}) == {HUB}


def test_files_no_longer_rendered_are_removed_and_their_unit_dropped(tmp_path: Path):
    manifest, running = state_files(tmp_path)
    route, unit = tmp_path / "99-plugin.toml", tmp_path / "helper.service"
    hub_json = tmp_path / "hub.json"
    first = [f(hub_json, "v1"), f(route, "r", component="proxy-dynamic"),
             f(unit, "[Unit]", component="helper.service")]
    txn.commit(first, [], {})
    txn.write_json(manifest, txn.manifest_of(first))
    p = txn.plan([f(hub_json, "v1")], [], manifest, running, {})
    assert p.removed == sorted([route, unit]) and p.dropped_units == ["helper.service"]
    assert p.unit_files_changed() and p.previous
    txn.commit([], p.removed, {})
    assert not route.exists() and not unit.exists() and hub_json.exists()


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hardway.apply.files import locked
    with locked(Path(sys.argv[1]), "config reload", print, Path(sys.argv[1] + "-holder")):
        print("got it", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_one_writer_at_a_time_and_the_second_says_whom_it_waits_for(tmp_path: Path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "1.5"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "got it"
    said: list[str] = []
    t0 = time.monotonic()
    holder_file = tmp_path / ".lock-holder"
    with locked(lock, "install", said.append, holder_file):
        waited = time.monotonic() - t0
        assert holder_file.read_text() == f"`hardway install` (pid {os.getpid()})\n"
        with locked(lock, "install", said.append, holder_file):  # re-entrant
            pass
    assert not holder_file.exists() and lock.read_bytes() == b""  # /etc stays untouched
    holder.wait(10)
    assert waited > 0.5, waited
    assert said == [f"hardway: waiting for `hardway config reload` (pid {holder.pid}) to "
                    "finish (one writing command at a time) ..."]


def test_an_undo_records_only_the_units_it_restarted(tmp_path: Path):
    manifest, running = state_files(tmp_path)
    hub_json, toml = tmp_path / "hub.json", tmp_path / "traefik.toml"
    files = [f(hub_json, "v1"), f(toml, "t1", component="proxy")]
    txn.commit(files, [], {})
    owned = txn.manifest_of(files)
    txn.record_running(running, owned, {HUB: "code1"})
    proxy_before = txn.read_json(running)[txn.PROXY_UNIT]
    toml.write_text("t2")  # the proxy was not restarted: it still runs t1
    txn.record_running(running, owned, {HUB: "code2"}, only={HUB})
    recorded = txn.read_json(running)
    assert recorded[txn.PROXY_UNIT] == proxy_before
    assert recorded[HUB] == txn.digests(owned, {HUB: "code2"})[HUB]
    p = txn.plan(files, [], manifest, running, {})
    assert txn.to_restart(p, {HUB: "code2"}) == {txn.PROXY_UNIT}

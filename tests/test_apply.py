from __future__ import annotations

import multiprocessing
import os
import stat

from hardway.apply.files import apply_files, locked, write_atomic
from hardway.plugin.contract import File


def test_write_atomic_sets_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "d" / "f.toml"
    write_atomic(target, b"x = 1\n", 0o640)
    assert target.read_bytes() == b"x = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["f.toml"]


def test_apply_writes_only_differences(tmp_path):
    a = File(tmp_path / "a", b"A", 0o600)
    b = File(tmp_path / "b", b"B", 0o644)
    assert [why for _, why in apply_files([a, b], None)] == ["new", "new"]
    assert apply_files([a, b], None) == []
    os.chmod(b.path, 0o666)
    b2 = File(tmp_path / "b", b"B", 0o644)
    a2 = File(tmp_path / "a", b"A2", 0o600)
    assert [(f.path.name, why) for f, why in apply_files([a2, b2], None)] == [
        ("a", "content"), ("b", "mode")]


def test_dry_run_writes_nothing(tmp_path):
    f = File(tmp_path / "a", b"A")
    assert apply_files([f], None, dry_run=True)
    assert not f.path.exists()


def _append_locked(lock, target, i):
    with locked(lock):
        text = target.read_text() if target.exists() else ""
        write_atomic(target, (text + f"{i}\n").encode())


def test_lock_serialises_writers(tmp_path):
    lock, target = tmp_path / ".lock", tmp_path / "out"
    procs = [multiprocessing.Process(target=_append_locked, args=(lock, target, i))
             for i in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sorted(int(x) for x in target.read_text().split()) == list(range(12))

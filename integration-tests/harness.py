"""A booted systemd host in systemd-nspawn, for hardway's integration tests.

- Debian 12 (bookworm) by default; Debian 13 (trixie), Ubuntu 22.04 (jammy) and 24.04
  (noble) for the platform matrix (test_platforms.py).
- Each suite's root is made once with debootstrap and cached (HARDWAY_IT_CACHE, default
  /var/cache/hardway-it, as ``<suite>-v1``); each container is a fresh copy of it. A
  per-suite lock makes a second process wait for a build under way instead of racing it;
  ``python3 harness.py prepare-roots SUITE...`` builds roots ahead (run-tests.sh does, in
  the background).
- The container shares the host's network (no --private-network): the hub on its port 80
  is 127.0.0.1:80 here. So only one container runs at a time, and booting checks that
  the ports are free and names what holds them.
- ``Container.create(..., docker=True)`` boots a container that can run a Docker engine
  (see ``DOCKER_BOOT``): its own network namespace with loopback only (dockerd's bridge,
  NAT and firewall rules stay in it; no packet can leave the machine, nor reach the
  host's ports), from a cached root variant with the Debian packages it needs installed
  while the root was built (``VARIANTS``), since it has no route to any archive.
- The host's CA bundle is installed in the container, as it would be on a network with a
  TLS-intercepting proxy, so apt, pip and uv inside reach the package registries.
- Commands run inside with nsenter and a clean environment (nothing leaks from the host).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HARDWAY_IT_CACHE", "/var/cache/hardway-it"))
WORK = Path(os.environ.get("HARDWAY_IT_WORK", "/var/tmp/hardway-it"))
SUITE = "bookworm"  # the default: the full suite runs on Debian 12
#: every suite the harness boots: which distribution's archive it comes from
SUITES = {"bookworm": "debian", "trixie": "debian", "jammy": "ubuntu", "noble": "ubuntu"}
ROOTFS = CACHE / f"{SUITE}-v1"
#: a Debian mirror of your own (debootstrap's default otherwise); Ubuntu suites always use
#: the default of debootstrap's own script for them
MIRROR = os.environ.get("HARDWAY_IT_MIRROR")
INCLUDE = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
#: the Ubuntu archive's signing keys; Debian 12 does not package them (see PEERS.md)
UBUNTU_KEYRING_DEB = "ubuntu-keyring_2023.11.28.1_all.deb"
UBUNTU_KEYRING_POOL = "pool/main/u/ubuntu-keyring/"
UBUNTU_KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"
#: set by run-tests.sh for one whole run: a root whose build failed earlier in the same run
#: (the background build) is reported, not built a second time
RUN_ID = os.environ.get("HARDWAY_IT_RUN", "")
HOST_PACKAGES = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap"}
PORTS = (80, 443, 8000, 8081, 8099)
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
NSPAWN_NOISE = ("Attempted to remove disk file system under",)
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
#: root variants: a suite's root plus Debian packages installed while it is built (online,
#: once, cached as ``<suite>-<variant>-<digest of the packages>``) for containers booted
#: without a route out (git: what hardway installs with a course, for nbgitpuller)
VARIANTS = {"docker": ("docker.io", "nftables", "iproute2", "git")}
#: what a container running dockerd needs from nspawn on a cgroup v1 host (PEERS.md,
#: "Docker inside the booted container"): its own network namespace (never the host's:
#: dockerd would add docker0, NAT and iptables rules there), every capability, the
#: keyring and bpf system calls runc uses, and writable /proc and /sys
DOCKER_BOOT = ("--private-network", "--capability=all", "--system-call-filter=@keyring bpf")
DOCKER_BOOT_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1"}
#: nspawn mounts the cgroup v1 controllers read-only; runc must create cgroups in each
#: ("mkdir /sys/fs/cgroup/cpuset/docker: read-only file system"). A oneshot unit inside
#: mounts each one again writable before containerd and dockerd start, at every boot.
CGROUP_RW_UNIT = "hardway-it-cgroup-rw.service"
CGROUP_CONTROLLERS = ("pids", "cpuset", "freezer", "cpu", "cpuacct", "blkio", "devices",
                      "memory")
CGROUP_RW_SCRIPT = f"""#!/bin/sh
# {CGROUP_RW_UNIT}: each cgroup v1 controller nspawn mounted read-only, mounted again
# writable (hardway's integration tests only; a real server has none of this)
set -e
for c in {' '.join(CGROUP_CONTROLLERS)}; do
    d=/sys/fs/cgroup/$c
    if grep -q " $d cgroup ro," /proc/mounts; then
        umount "$d"
        mount -t cgroup -o "$c" cgroup "$d"
    fi
done
"""
CGROUP_RW = """[Unit]
Description=cgroup v1 controllers writable for dockerd (hardway integration tests only)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service docker.service docker.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/hardway-it-cgroup-rw

[Install]
WantedBy=containerd.service docker.service
"""


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_host_tools() -> None:
    missing = [pkg for tool, pkg in HOST_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"integration tests need {', '.join(missing)}: run as root")
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def rootfs_path(suite: str = SUITE) -> Path:
    return CACHE / f"{suite}-v1"


def variant_path(suite: str, variant: str) -> Path:
    """Named after its packages: a changed list is another root, built afresh."""
    digest = hashlib.sha256(" ".join(VARIANTS[variant]).encode()).hexdigest()[:8]
    return CACHE / f"{suite}-{variant}-{digest}"


def ensure_variant(suite: str, variant: str) -> Path:
    """``suite``'s root with ``VARIANTS[variant]`` installed, cached; built from the plain
    root (made first when absent) by apt-get inside it, unbooted, the first time."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown root variant {variant!r}; known: {', '.join(VARIANTS)}")
    base = ensure_rootfs(suite)
    root = variant_path(suite, variant)
    if (root / ".hardway-complete").exists():
        return root
    with _locked(CACHE / f"{root.name}.lock"):
        if (root / ".hardway-complete").exists():
            return root
        tmp = CACHE / f"{root.name}.tmp"
        if tmp.exists():
            _remove_tmp_root(tmp)
        t0 = time.monotonic()
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], check=True)
        if HOST_CA.is_file():  # apt through the TLS-intercepting proxy, as in create()
            shutil.copyfile(HOST_CA, tmp / "etc/ssl/certs/ca-certificates.crt")
        # no service may start while the root is built (there is no init)
        policy = tmp / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        packages = " ".join(VARIANTS[variant])
        logfile = CACHE / f"{root.name}.log"
        log(f"apt-get install {packages} into {tmp} (cached afterwards; output in {logfile})")
        script = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
                  f"apt-get install -y -q --no-install-recommends {packages} && apt-get clean")
        with logfile.open("w") as out:
            proc = subprocess.run(["systemd-nspawn", "-D", str(tmp), "--register=no",
                                   "--keep-unit", "-q", "--pipe", "sh", "-c", script],
                                  stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=1200)
        if proc.returncode != 0:
            _remove_tmp_root(tmp)
            raise RootBuildFailed(f"apt-get install {packages} in the {suite} root exited "
                                  f"{proc.returncode}; see {logfile}")
        policy.unlink()
        tmp.rename(root)
        log(f"{root.name} root ready in {time.monotonic() - t0:.0f} s")
    return root


def build_log(suite: str) -> Path:
    """Where debootstrap's output for ``suite``'s root goes (kept after a failure)."""
    return CACHE / f"{suite}-v1.log"


class RootBuildFailed(RuntimeError):
    pass


@contextlib.contextmanager
def _locked(path: Path, holder: str = "another process is building this root"
            ) -> Iterator[None]:
    """An exclusive flock on ``path``; says whom it waits for when it must wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {path}: {holder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_rootfs(suite: str = SUITE) -> Path:
    """The cached root of ``suite``, made with debootstrap (about 1 min) when absent."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; the harness knows {', '.join(SUITES)}")
    ensure_host_tools()
    root = rootfs_path(suite)
    if (root / ".hardway-complete").exists():
        return root
    failed = CACHE / f"{suite}-v1.failed"
    with _locked(CACHE / f"{suite}-v1.lock"):
        if (root / ".hardway-complete").exists():  # built while we waited
            return root
        if failed.exists():
            record = json.loads(failed.read_text())
            failed.unlink()
            if RUN_ID and record.get("run") == RUN_ID:
                error = record["error"]
                if record["log"] not in error:
                    error += f"; see {record['log']}"
                raise RootBuildFailed(f"building the {suite} root failed earlier in this run "
                                      f"(run-tests.sh's background build): {error}")
        try:
            _build_rootfs(suite, root)
        except Exception as e:
            failed.write_text(json.dumps({"run": RUN_ID, "error": str(e),
                                          "log": str(build_log(suite))}))
            raise
    return root


def _build_rootfs(suite: str, root: Path) -> None:
    tmp = CACHE / (root.name + ".tmp")
    if tmp.exists():  # left by a build that died (we hold the lock)
        _remove_tmp_root(tmp)
    args = ["debootstrap", "--variant=minbase", f"--include={INCLUDE}"]
    mirror = MIRROR if SUITES[suite] == "debian" else None
    if SUITES[suite] == "ubuntu":
        args += ["--components=main,universe", f"--keyring={ubuntu_keyring()}"]
        ensure_script(suite)
    args += [suite, str(tmp)] + ([mirror] if mirror else [])
    logfile = build_log(suite)
    log(f"debootstrap {suite} into {tmp} (cached afterwards; output in {logfile})")
    t0 = time.monotonic()
    with logfile.open("w") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            own = tmp / "debootstrap/debootstrap.log"
            if own.is_file():  # debootstrap's own detailed log dies with the tmp root
                out.write(f"\n--- {own} ---\n{own.read_text(errors='replace')[-20000:]}")
    if proc.returncode != 0:
        _remove_tmp_root(tmp)
        raise RootBuildFailed(f"debootstrap {suite} exited {proc.returncode}; see {logfile}")
    if SUITES[suite] == "ubuntu":
        # Ubuntu points it at systemd-resolved's stub, which has no upstream in a container
        resolv = tmp / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
    (tmp / ".hardway-complete").write_text("ok\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    log(f"{suite} root ready in {time.monotonic() - t0:.0f} s")


def _remove_tmp_root(tmp: Path) -> None:
    """Delete a half-built root; a debootstrap killed midway (run-tests.sh left early) may
    have left /proc, /sys or device mounts in it: unmount them first, deepest first."""
    prefix = str(tmp.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def ensure_script(suite: str) -> None:
    """Debian 12's debootstrap predates Ubuntu 24.04: its script is gutsy's, as for every
    Ubuntu release since."""
    script = DEBOOTSTRAP_SCRIPTS / suite
    if not script.exists():
        log(f"adding the debootstrap script link {script} -> gutsy")
        with contextlib.suppress(FileExistsError):
            script.symlink_to("gutsy")


def ubuntu_mirror(suite: str) -> str:
    """The default mirror debootstrap's own Ubuntu script names for ``suite`` here (read
    from the script, so the harness names no host of its own)."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    probe = 'default_mirror() { echo "$1"; exit 0; }; . "$0"; exit 1'
    out = subprocess.run(["sh", "-c", probe, str(DEBOOTSTRAP_SCRIPTS / "gutsy")],
                         env={"PATH": CLEAN_ENV["PATH"], "ARCH": arch, "SUITE": suite},
                         capture_output=True, text=True)
    mirror = out.stdout.strip()
    if out.returncode != 0 or not mirror.startswith(("http://", "https://")):
        raise RootBuildFailed(f"no default mirror in debootstrap's gutsy script for {suite} "
                              f"on {arch}: {out.stdout!r} {out.stderr!r}")
    return mirror


def ubuntu_keyring() -> Path:
    """The Ubuntu archive keyring, from the ubuntu-keyring package in Ubuntu's pool,
    checked against a known sha256 and cached."""
    dest = CACHE / "ubuntu-keyring" / "ubuntu-archive-keyring.gpg"
    if dest.is_file():
        return dest
    url = f"{ubuntu_mirror('noble')}/{UBUNTU_KEYRING_POOL}{UBUNTU_KEYRING_DEB}"
    log(f"fetching {url}")
    with urllib.request.urlopen(url, timeout=60) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != UBUNTU_KEYRING_SHA256:
        raise RootBuildFailed(f"{url}: sha256 {digest}, expected {UBUNTU_KEYRING_SHA256}")
    work = CACHE / f"ubuntu-keyring.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        (work / UBUNTU_KEYRING_DEB).write_bytes(data)
        subprocess.run(["dpkg-deb", "-x", str(work / UBUNTU_KEYRING_DEB), str(work / "x")],
                       check=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged = dest.with_name(f"{dest.name}.{os.getpid()}")
        shutil.copyfile(work / "x/usr/share/keyrings/ubuntu-archive-keyring.gpg", staged)
        staged.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def prepare_roots(suites: list[str]) -> int:
    """Build the roots that are absent, one after the other; 1 when any failed (each
    failure is also recorded for the tests that need the root)."""
    rc = 0
    for suite in suites:
        try:
            ensure_rootfs(suite)
        except Exception as e:
            log(f"{suite}: {e}")
            rc = 1
    return rc


def port_holders(ports: tuple[int, ...] = PORTS) -> list[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    busy = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        port = fields[3].rsplit(":", 1)[-1]
        if port.isdigit() and int(port) in ports:
            busy.append(line.strip())
    return busy


def copy_checkout(dest: Path, source: Path = REPO) -> None:
    """The checkout as git sees it (tracked and new files), without caches and venvs."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache",
                                    ".ruff_cache", ".import_linter_cache", "*.egg-info", "build",
                                    "artifacts", "node_modules")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=ignore, symlinks=True)


SLOT_LOCK = Path(os.environ.get("HARDWAY_IT_SLOT_LOCK", "/run/lock/hardway-it.lock"))


@contextlib.contextmanager
def container_slot() -> Iterator[None]:
    """Booted containers share the host's ports: one test session or benchmark at a time
    holds them. A second one (another terminal, a parallel job) waits here instead of
    failing on taken ports."""
    with _locked(SLOT_LOCK, "another integration run holds the container slot"):
        yield


def remove_in_background(path: Path) -> None:
    """``rm -rf`` of a powered-off container's root, not waited for (its own session: it
    finishes even when this run ends first)."""
    subprocess.Popen(["rm", "-rf", "--one-file-system", str(path)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


class Container:
    """A fresh copy of the cached root, booted with systemd as PID 1."""

    def __init__(self, name: str, docker: bool = False):
        self.name = name
        self.docker = docker
        self.dir = WORK / name
        self.proc: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.console = WORK / f"{name}.console.log"

    @classmethod
    def create(cls, name: str, source: Path = REPO, suite: str = SUITE,
               docker: bool = False) -> Container:
        """A fresh ``suite`` container with ``source`` (this checkout unless told) at
        /root/hardway; ``docker``: one that runs a Docker engine, on a private network
        (see the module's docstring)."""
        rootfs = ensure_variant(suite, "docker") if docker else ensure_rootfs(suite)
        c = cls(name, docker=docker)
        if c.dir.exists():
            shutil.rmtree(c.dir)
        WORK.mkdir(parents=True, exist_ok=True)
        for trash in WORK.glob(".trash-*"):  # an earlier run's, whose removal was cut short
            if time.time() - trash.lstat().st_mtime > 600:
                remove_in_background(trash)
        subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(c.dir)], check=True)
        (c.dir / ".hardway-complete").unlink(missing_ok=True)
        if HOST_CA.is_file():
            # as on a network whose TLS-intercepting proxy's CA the admin has installed
            local = c.dir / "usr/local/share/ca-certificates/host-bundle.crt"
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA, local)
            shutil.copyfile(HOST_CA, c.dir / "etc/ssl/certs/ca-certificates.crt")
        (c.dir / "etc/hostname").write_text(name + "\n")
        copy_checkout(c.dir / "root/hardway", source)
        if docker:
            script = c.dir / "usr/local/sbin/hardway-it-cgroup-rw"
            script.write_text(CGROUP_RW_SCRIPT)
            script.chmod(0o755)
            system = c.dir / "etc/systemd/system"
            (system / CGROUP_RW_UNIT).write_text(CGROUP_RW)
            for wanted_by in ("containerd.service", "docker.service"):
                wants = system / f"{wanted_by}.wants"
                wants.mkdir(exist_ok=True)
                (wants / CGROUP_RW_UNIT).symlink_to(f"../{CGROUP_RW_UNIT}")
        return c

    # --- lifecycle
    def boot(self, timeout: float = 90) -> None:
        busy = [] if self.docker else port_holders()
        if busy:
            raise RuntimeError("ports needed by the container are taken (a leftover sandbox "
                               "or test container?):\n" + "\n".join(busy))
        console = self.console.open("ab")
        # as on a real server, root may set firewall rules (hardway's nftables table
        # confining users' servers); nspawn drops this capability by default
        extra = DOCKER_BOOT if self.docker else ("--capability=CAP_NET_ADMIN",)
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.dir), "--boot", "--register=no", "--keep-unit",
             "-q", f"--machine={self.name}", *extra],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(DOCKER_BOOT_ENV if self.docker
                                                          else {})})
        console.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited ({self.proc.returncode}); see "
                                   f"{self.console}")
            self.init_pid = self._find_init()
            if self.init_pid:
                r = self.run(["systemctl", "is-system-running"], check=False)
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    log(f"{self.name}: booted ({state}) in {time.monotonic() - t0:.1f} s, "
                        f"nspawn pid {self.proc.pid}, init pid {self.init_pid}")
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not finish booting in {timeout} s")

    def enable_memory_cgroup(self) -> None:
        """Let systemd inside enforce memory limits (MemoryMax) on this cgroup v1 host.

        nspawn mounts the v1 controllers read-only, so units inside get no memory cgroup
        of their own and MemoryMax is silently not applied (real servers, on cgroup v2 or
        v1, have none of this). Remounting the memory controller writable and re-executing
        systemd makes the units started afterwards get one."""
        self.run(["bash", "-c", "umount /sys/fs/cgroup/memory && "
                  "mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory"])
        self.run(["systemctl", "daemon-reexec"])
        time.sleep(1)

    def _find_init(self) -> int | None:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except FileNotFoundError:
            return None
        for pid in children.split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except FileNotFoundError:
                continue
        return None

    def poweroff(self, timeout: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.init_pid:
            try:
                os.kill(self.init_pid, signal.SIGRTMIN + 4)  # systemd: poweroff
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: no clean poweroff in {timeout} s; killing nspawn")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        self.init_pid = None
        # the shared network namespace: a table the hub's confinement left (a container
        # killed before its units stopped) must not outlive it
        if shutil.which("nft"):
            subprocess.run(["nft", "delete", "table", "inet", "hardway"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the shared network namespace: wait until the container's ports are free again
        t0 = time.monotonic()
        while port_holders() and time.monotonic() - t0 < 10:
            time.sleep(0.2)

    def reboot(self) -> None:
        self.poweroff()
        self.boot()

    def destroy(self) -> None:
        t0 = time.monotonic()
        self.poweroff()
        t1 = time.monotonic()
        if self.dir.exists() and not os.environ.get("HARDWAY_IT_KEEP"):
            # the copy goes in the background (a booted root is large: seconds of I/O
            # the next test need not wait for); a run's leftovers go at the next create
            trash = WORK / f".trash-{self.name}-{os.getpid()}-{int(t1)}"
            try:
                os.rename(self.dir, trash)
            except OSError:
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                remove_in_background(trash)
        log(f"{self.name}: powered off in {t1 - t0:.1f} s")

    # --- commands
    def run(self, cmd: list[str], *, check: bool = True, input: str | None = None,
            timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        assert self.init_pid, "container is not booted"
        full = ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i",
                *(f"{k}={v}" for k, v in {**CLEAN_ENV, **(env or {})}.items()), *cmd]
        proc = subprocess.run(full, input=input, text=True, capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"in {self.name}: {' '.join(cmd)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
        return proc

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["bash", "-c", script], **kw)  # type: ignore[arg-type]

    def run_unbooted(self, cmd: list[str], timeout: float = 120
                     ) -> subprocess.CompletedProcess[str]:
        """Run a command in the container's root *without* booting it: no systemd as PID 1."""
        assert self.proc is None, "container is booted"
        proc = subprocess.run(["systemd-nspawn", "-D", str(self.dir), "--register=no",
                               "--keep-unit", "-q", "--pipe", *cmd], text=True, capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        # nspawn's own complaint on a host without systemd, not the command's output
        proc.stderr = "".join(line for line in proc.stderr.splitlines(True)
                              if not line.startswith(NSPAWN_NOISE))
        return proc

    def path(self, inside: str) -> Path:
        """A path inside the container, seen from the host."""
        return self.dir / inside.lstrip("/")


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "prepare-roots":
        unknown = [s for s in argv[1:] if s not in SUITES]
        if unknown:
            print(f"unknown suites {unknown}; known: {', '.join(SUITES)}", file=sys.stderr)
            return 2
        return prepare_roots(argv[1:] or list(SUITES))
    print(f"usage: {sys.argv[0]} prepare-roots [{' '.join(SUITES)}]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

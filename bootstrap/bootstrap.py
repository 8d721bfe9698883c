#!/usr/bin/env python3
"""Install or upgrade hardway: a multi-user JupyterHub on this systemd server.

    curl -fsSL <url>/bootstrap.py | sudo python3 - --admin alice

Constraints on this file, and why:
- Standard library only, and nothing from hardway: it runs before either exists.
- It must run on the Python of any supported distribution and reach its own checks on an
  older one, so it uses no syntax newer than Python 3.6 (no walrus, no ``X | Y`` types,
  no ``from __future__ import annotations``).
- Every refusal (not root, no systemd, old Python, unsupported distribution, a bad flag)
  is one line on stderr and exit status 2, before anything is written.
- Nothing may prompt: apt runs non-interactively, pip and uv never ask.
- No secret reaches a command line, the terminal or the log: admin passwords go to
  ``hardway install`` on its standard input. A password given as ``--admin
  NAME:PASSWORD`` is on this script's own command line, though: the first thing main()
  does is overwrite it there (``/proc/self/cmdline``, through ``/proc/self/mem``; best
  effort), and it warns that the password was visible to other local users while the
  command started (a parent ``sudo`` keeps showing it) and stays in the shell history.
  ``--admin NAME`` is the safe form: ``hardway install`` then generates a first
  password and shows it once.

What it does, each step skipped when already done:
  1. apt-installs the few Debian packages it needs (python3-venv, ca-certificates);
  2. creates the hub environment /opt/hardway/hub (rebuilt when the system Python changed);
  3. installs the pinned uv into it with pip, requiring one of the hashes below;
  4. installs hardway (from --source: default the checkout this file sits in, else
     hardway==HARDWAY_VERSION from the package index) without its dependencies, then its
     dependencies at the versions and sha256 of the hub.txt that hardway ships (uv
     --require-hashes: a file whose hash is not pinned is refused before anything is
     installed), then any --plugin (its packages that hub.txt pins are hash-checked too);
  5. hands over to ``hardway install``, which does the rest and can be rerun alone.
The full log goes to /var/log/hardway/install.log (root-only).

A source tree has no hash to check: hardway built from a checkout is the code the admin ran
this file from (its build requirements are hash-checked: hardway/pins/build.txt).

Steps 2-4 run with a marker file in the hub environment (``.hardway-installing``, the one
hardway's own package steps use). A run that finds it was interrupted: it checks every
installed package against its RECORD and reinstalls the damaged ones before going on
(``record_damage``, a stdlib copy of ``hardway.pyenv.damage``: this file cannot import it).
"""

import argparse
import base64
import csv
import email
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

UV_VERSION = "0.13.9"
#: the sha256 of every uv 0.13.9 wheel: the same as uv's in hardway/pins/hub.txt (a test
#: keeps them equal; this file runs before that one is on the machine)
UV_SHA256 = (
    "16963d19594e18d746a70c7fce82237bde4f2cac4cfcf0ca2b84796fe9d0c6e9",
    "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
    "3eeeb51a267a2144640fcd8f38d4a2f63439b39bc47445fd84727c3fc462c843",
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    "56ec37616c00220032fc7b8c9d0ef51367fd0d70d9cd6ddd841660f949f84fed",
    "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    "6a44b2ed8111d2f60d2b92627c5dccda3f7ed7570b18ce115e569cd68c28246b",
    "6b0c7b9f47a5d011939d61e324d3fe18a8bc155d8dd53add738709a92f290a7c",
    "6d5114bba238adddacb32fb11904f2b3ff4e988f8e9ff0d8d3b5e9822cf836b8",
    "7ec1e1dd9b6cb335c301afdf877989df384227313981850755a59561f75e4ab8",
    "a2ee66fe8b6608e1482ab1bde5799da04705c1cb40324c7f66054ecf46ae6e40",
    "a6e845f387e4ed55bb59342957a9179e24a631fcc7668bda3426ae1cef8ed4b9",
    "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    "c5dbdb7c8737cd183a9dce95b39cfd1f3d54ec2a27a1bb58f160293f9ba2c805",
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "db5c8df7145c21ffea9c0f74e38823bac3af60cbadf0e26b8633f08627b17bab",
    "dd6f4f93ddf8a668c73f0945f3638444b2140a4e15a3912067493fc6335543e4",
    "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",
    "eeb92051c2123b9730c46b04cc843cfa4bc7d7b0aec56df431a2215ef4cb0273",
)
#: what the one-line install (no checkout beside this file) installs: hardway's own version
HARDWAY_VERSION = "0.1.0"
APT_PACKAGES = ["python3-venv", "ca-certificates"]
PREFIX = "/opt/hardway"
HUB_VENV = PREFIX + "/hub"
MARKER = ".hardway-installing"  # hardway.pyenv.MARKER
ENSUREPIP = ("pip", "setuptools")  # what ``python -m venv`` puts in a venv
LOG_DIR = "/var/log/hardway"
LOG_FILE = LOG_DIR + "/install.log"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
UV_CACHE = "/var/cache/hardway/uv"
SUPPORTED = {"debian": (12,), "ubuntu": (22, 4)}
USERNAME_RE = re.compile(r"[A-Za-z0-9._@+-]{1,64}\Z")
SANDBOX_HINT = ("to try hardway on a machine without systemd, boot a throwaway container: "
                "sudo python3 integration-tests/sandbox.py up --admin NAME (see README)")
HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else None


class Refusal(Exception):
    """One line for the user; exit status 2."""


class Failure(Exception):
    """A step failed; exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refusal("bootstrap.py: {} (see --help)".format(message))


def is_admin_flag(arg):
    """``--admin`` or an abbreviation argparse accepts for it (``--adm``)."""
    return len(arg) >= 3 and b"--admin".startswith(arg)


def redact_admin_args(area):
    """The NUL-separated argument bytes ``area`` with each ``--admin NAME:PASSWORD`` (or
    ``--admin=NAME:PASSWORD``) shortened to ``NAME:***``, padded with NULs to the same
    length (never longer: it is written back in place); and how many were changed."""
    def masked(value):
        name, _, password = value.partition(b":")
        return name + b":" + b"*" * min(3, len(password))

    out = []
    count = 0
    prev = b""
    for arg in area.split(b"\0"):
        new = arg
        flag, eq, value = arg.partition(b"=")
        if is_admin_flag(prev) and b":" in arg:
            new = masked(arg)
        elif arg.startswith(b"--") and eq and is_admin_flag(flag) and b":" in value:
            new = flag + b"=" + masked(value)
        if new != arg:
            count += 1
        out.append(new)
        prev = arg
    joined = b"\0".join(out)
    return joined + b"\0" * (len(area) - len(joined)), count


def scrub_cmdline_passwords():
    """Remove admin passwords from this process's command line as other users see it
    (``ps``, /proc/PID/cmdline): overwrite the kernel's argument area through
    /proc/self/mem. Returns how many were removed; best effort, never raises."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # fields after "(comm)" start at field 3; arg_start and arg_end are fields 48, 49
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            area = mem.read(end - start)
            new, count = redact_admin_args(area)
            if count and len(new) == len(area):
                mem.seek(start)
                mem.write(new)
        return count
    except (OSError, ValueError, IndexError):
        return 0


def parse_args(argv):
    p = Parser(prog="bootstrap.py", description="Install or upgrade a hardway JupyterHub.")
    p.add_argument("--admin", action="append", default=[], metavar="NAME[:PASSWORD]",
                   help="a hub admin, optionally with an initial password (repeatable; "
                        "the password may contain ':')")
    p.add_argument("--plugin", action="append", default=[], metavar="PIP_SPEC",
                   help="also install this hardway plugin package (repeatable)")
    p.add_argument("--source", metavar="PIP_SPEC",
                   help="where hardway comes from (default: this checkout, else the index)")
    p.add_argument("--wheelhouse", metavar="DIR", help="install Python packages only from DIR")
    p.add_argument("--traefik-binary", metavar="PATH", help="use this Traefik binary")
    p.add_argument("--force", action="store_true", help="install on an unsupported distribution")
    args = p.parse_args(argv)
    admins = {}
    for item in args.admin:
        name, sep, password = item.partition(":")
        if not USERNAME_RE.match(name):
            raise Refusal("bootstrap.py: --admin {!r}: expected NAME or NAME:PASSWORD, NAME "
                          "being letters, digits and . _ @ + -".format(name))
        if sep and not password:
            raise Refusal("bootstrap.py: --admin {}: empty password after ':' (give "
                          "NAME:PASSWORD, or just NAME)".format(name))
        if len(password.encode("utf-8")) > 72:
            raise Refusal("bootstrap.py: --admin {}: the password is longer than 72 bytes, "
                          "bcrypt's limit (give a shorter one, or just NAME)".format(name))
        admins[name.lower()] = password if sep else None
    args.admins = admins
    if args.wheelhouse is not None and not os.path.isdir(args.wheelhouse):
        raise Refusal("bootstrap.py: --wheelhouse {}: not a directory".format(args.wheelhouse))
    if args.traefik_binary is not None and not os.path.isfile(args.traefik_binary):
        raise Refusal("bootstrap.py: --traefik-binary {}: no such file".format(
            args.traefik_binary))
    for spec in args.plugin + ([args.source] if args.source is not None else []):
        if not spec.strip() or spec.startswith("-"):
            raise Refusal("bootstrap.py: {!r} is not a pip requirement".format(spec))
    return args


def read_os_release(path="/etc/os-release"):
    info = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    info[key] = value.strip().strip('"')
    except OSError:
        pass
    return info


def version_tuple(text):
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def check_system(force):
    if os.geteuid() != 0:
        raise Refusal("bootstrap.py must run as root: curl -fsSL <url>/bootstrap.py | "
                      "sudo python3 - --admin NAME")
    try:
        with open("/proc/1/comm") as f:
            init = f.read().strip()
    except OSError:
        init = "unknown"
    if init != "systemd" or not os.path.isdir("/run/systemd/system"):
        raise Refusal("systemd is not running as PID 1 here (PID 1 is {!r}); hardway needs a "
                      "systemd host; {}".format(init, SANDBOX_HINT))
    if sys.version_info < (3, 10):
        raise Refusal("Python {}.{} is too old: hardway needs Python >= 3.10 (Debian >= 12, "
                      "Ubuntu >= 22.04)".format(*sys.version_info[:2]))
    info = read_os_release()
    distro, version = info.get("ID", "unknown"), info.get("VERSION_ID", "")
    wanted = SUPPORTED.get(distro)
    if wanted is None or version_tuple(version) < wanted:
        if not force:
            raise Refusal("unsupported distribution {} {}: hardway supports Debian >= 12 "
                          "and Ubuntu >= 22.04 (pass --force to try anyway)".format(
                              info.get("PRETTY_NAME", distro), version).replace("  ", " "))


class Installer:
    def __init__(self, log):
        self.log = log
        self.start = time.monotonic()
        self.n = 0

    def step(self, title, total=5):
        self.n += 1
        print("bootstrap [{}/{}] {} ({:.1f} s)".format(self.n, total, title,
                                                       time.monotonic() - self.start),
              flush=True)
        self.log.write("== step {}: {}\n".format(self.n, title))

    def run(self, cmd, env=None, input=None):
        self.log.write("$ {}\n".format(" ".join(cmd)))
        self.log.flush()
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(cmd, env=full_env, input=input, universal_newlines=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log.write(proc.stdout)
        self.log.flush()
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            raise Failure("`{}` failed (exit {}):\n{}\nFull log: {}".format(
                " ".join(cmd), proc.returncode, tail, LOG_FILE))
        return proc.stdout


def tool_env(wheelhouse):
    env = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": UV_CACHE,
           "UV_COMPILE_BYTECODE": "1"}
    if os.path.isfile(CA_BUNDLE):
        # trust the system CA store (campus TLS-intercepting proxies put their CA there)
        env["SSL_CERT_FILE"] = os.environ.get("SSL_CERT_FILE", CA_BUNDLE)
        env["PIP_CERT"] = os.environ.get("PIP_CERT", CA_BUNDLE)
    if wheelhouse:
        env.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheelhouse, "UV_OFFLINE": "1",
                    "UV_NO_INDEX": "1", "UV_FIND_LINKS": wheelhouse})
    return env


def missing_apt_packages(inst):
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *APT_PACKAGES],
        universal_newlines=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ok = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in APT_PACKAGES if p not in ok]


def venv_python_version(venv):
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() in ("version", "version_info"):
                    return value.strip()
    except OSError:
        return None
    return None


def source_tree_digest(root):
    """A digest of the files that make the hardway package, to reinstall only on change."""
    h = hashlib.sha256()
    names = ["setup.cfg", "pyproject.toml"]
    for top in ("hardway", "plugins", "units"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if not fn.endswith((".pyc", ".pyo")):
                    names.append(os.path.relpath(os.path.join(dirpath, fn), root))
    for name in names:
        h.update(name.encode() + b"\0")
        with open(os.path.join(root, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def canonical_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def record_damage(venv):
    """What an interrupted install left in ``venv``: ({name: [bad path, ...]} for packages
    whose files are missing or differ from their RECORD, {dist-info dir: name} for those
    without METADATA or RECORD, [leftover NAME-VERSION.data dirs]). RECORD entries without
    a hash and paths outside the venv are not checked. A copy of hardway.pyenv.damage."""
    files, unreadable, leftovers = {}, {}, []
    root = os.path.normpath(venv) + os.sep
    for site in sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))):
        for entry in sorted(os.listdir(site)):
            path = os.path.join(site, entry)
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            if entry.endswith(".data") and "-" in entry:
                leftovers.append(path)
                dist_info = path[:-len(".data")] + ".dist-info"
                if os.path.isfile(os.path.join(dist_info, "RECORD")):
                    # installed, but its data files were never all moved out
                    files.setdefault(canonical_name(entry.split("-")[0]), []).append(path)
            if not entry.endswith(".dist-info"):
                continue
            name = canonical_name(entry.split("-")[0])
            record = os.path.join(path, "RECORD")
            if not (os.path.isfile(os.path.join(path, "METADATA")) and os.path.isfile(record)):
                unreadable[path] = name
                continue
            with open(record, newline="", encoding="utf-8", errors="replace") as f:
                for row in csv.reader(f):
                    if len(row) < 2 or not row[0] or "=" not in row[1]:
                        continue
                    algorithm, _, expected = row[1].partition("=")
                    target = os.path.normpath(os.path.join(site, row[0]))
                    if (algorithm not in hashlib.algorithms_guaranteed
                            or not target.startswith(root)):
                        continue
                    h = hashlib.new(algorithm)
                    try:
                        with open(target, "rb") as data:
                            for chunk in iter(lambda: data.read(1 << 20), b""):
                                h.update(chunk)
                    except OSError:
                        files.setdefault(name, []).append(target)
                        continue
                    if base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode() != expected:
                        files.setdefault(name, []).append(target)
    return files, unreadable, leftovers


def clear_unreadable(found, log):
    """Remove dist-info dirs uv cannot read (the package then counts as absent and is
    installed over what was half-written) and leftover .data dirs; their names."""
    _, unreadable, leftovers = found
    for path in list(unreadable) + leftovers:
        shutil.rmtree(path, ignore_errors=True)
        log.write("removed {} (left by an interrupted install)\n".format(path))
    return sorted(set(unreadable.values()))


def damage_names(found):
    return sorted(set(found[0]) | set(found[1].values()))


def describe_damage(found):
    files, unreadable, _ = found
    parts = ["{} ({} file(s) missing or changed, e.g. {})".format(n, len(files[n]), files[n][0])
             for n in sorted(files)]
    parts += ["{} (no METADATA or RECORD)".format(n) for n in sorted(set(unreadable.values()))]
    return "; ".join(parts)


def default_source():
    """The checkout this script sits in, if it is one; else hardway from the index at
    this script's version."""
    if HERE is not None:
        root = os.path.dirname(HERE)
        if os.path.isfile(os.path.join(root, "setup.cfg")) and os.path.isdir(
                os.path.join(root, "hardway")):
            return root
    return "hardway==" + HARDWAY_VERSION


def read_pins(text):
    """[(canonical name, "name==version ; marker")] of a compiled pins file, its --hash
    continuation lines read past. A stdlib copy of hardway.apply.pinning.read_pins."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        spec = " ".join(w for w in line.split() if not w.startswith("--hash="))
        name, sep, _ = spec.partition("==")
        if sep:
            out.append((canonical_name(name.strip()), spec))
    return out


def pinned_lines(names, pins_text):
    """(the pins' exact lines for these package names, the names the pins lack)."""
    pins = read_pins(pins_text)
    lines, missing = [], []
    for name in names:
        found = [line for pinned, line in pins if pinned == canonical_name(name)]
        lines.extend(found)
        if not found:
            missing.append(name)
    return lines, missing


def installed_hardway(venv):
    """(hardway's Requires-Dist names, the hub.txt it ships) as installed in ``venv``."""
    site = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    metas = [m for s in site for m in glob.glob(os.path.join(s, "hardway-*.dist-info",
                                                             "METADATA"))]
    pins = [p for s in site for p in glob.glob(os.path.join(s, "hardway", "pins", "hub.txt"))]
    if len(metas) != 1 or len(pins) != 1:
        raise Failure("hardway is not installed whole in {} (no single METADATA and "
                      "pins/hub.txt); remove it and run bootstrap.py again".format(venv))
    with open(metas[0], encoding="utf-8", errors="replace") as f:
        meta = email.message_from_string(f.read())
    names = []
    for req in meta.get_all("Requires-Dist") or []:
        if "extra" not in req.partition(";")[2]:
            names.append(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))
    return names, pins[0]


def install_hardway(inst, env, cmd, source, build, plugins, damaged):
    """hardway itself without its dependencies, then its dependencies at the versions and
    hashes of the hub.txt it ships (uv --require-hashes), then the --plugin packages and
    damaged packages hub.txt does not pin (uv still checks the hashes of those it pins)."""
    again = [a for n in damaged if n == "hardway" for a in ("--reinstall-package", n)]
    inst.run([*cmd, "--no-deps", *build, *again, source], env=env)
    names, pins = installed_hardway(HUB_VENV)
    with open(pins) as f:
        text = f.read()
    lines, missing = pinned_lines(names, text)
    if missing:
        raise Failure("hardway needs {} but its pins ({}) do not hold {}: this hardway is "
                      "broken".format(", ".join(missing), pins, ", ".join(missing)))
    others = [n for n in damaged if n != "hardway"]
    pinned, loose = pinned_lines(others, text)
    reinstall = [a for n in others for a in ("--reinstall-package", n)]
    inst.run([*cmd, "--require-hashes", "--constraints", pins, *reinstall, *lines, *pinned],
             env=env)
    if plugins or loose:
        inst.run([*cmd, "--constraints", pins, *reinstall, *plugins, *loose], env=env)


PASSWORD_WARNING = ("bootstrap.py: warning: a password on the command line (--admin "
                    "NAME:PASSWORD) is visible to other local users (ps) while the command "
                    "starts (under sudo, in sudo's command line until it ends) and stays in "
                    "your shell history; prefer --admin NAME: a first password is then "
                    "generated and shown once")


def main(argv=None):
    if argv is None:
        scrub_cmdline_passwords()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if any(args.admins.values()):
            print(PASSWORD_WARNING, file=sys.stderr)
        check_system(args.force)
    except Refusal as e:
        print(str(e), file=sys.stderr)
        return 2
    os.makedirs(LOG_DIR, mode=0o700, exist_ok=True)
    os.chmod(LOG_DIR, 0o700)
    fd = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as log:
        redacted = [re.sub(r"^([^:]*):.*$", r"\1:***", a) if i and sys.argv[i - 1] == "--admin"
                    else a for i, a in enumerate(sys.argv)]
        log.write("\n==== bootstrap {} {}\n".format(time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                   " ".join(redacted[1:])))
        try:
            return run(args, Installer(log))
        except Failure as e:
            print("bootstrap.py: " + str(e), file=sys.stderr)
            log.write("FAILED: {}\n".format(e))
            return 1


def run(args, inst):
    env = tool_env(args.wheelhouse)
    inst.step("system packages")
    missing = missing_apt_packages(inst)
    if missing:
        inst.run(["apt-get", "update", "-q"], env=env)
        inst.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                  "-o", "Dpkg::Options::=--force-confdef",
                  "-o", "Dpkg::Options::=--force-confold", *missing], env=env)
        print("      apt installed " + ", ".join(missing))

    inst.step("hub environment " + HUB_VENV)
    py = os.path.join(HUB_VENV, "bin", "python")
    marker = os.path.join(HUB_VENV, MARKER)
    have = venv_python_version(HUB_VENV)
    now = "{}.{}.{}".format(*sys.version_info[:3])
    if have is not None and have != now:
        print("      Python changed from {} to {}: rebuilding".format(have, now))
        shutil.rmtree(HUB_VENV)
    # a run that was interrupted (the marker is still there) first finds what it left
    found = ({}, {}, [])
    marked = os.path.exists(marker)  # then what uv installs below is checked as well
    interrupted = marked and os.path.exists(py)
    if interrupted:
        found = record_damage(HUB_VENV)
        inst.log.write("interrupted earlier; damaged: {}\n".format(
            describe_damage(found) or "nothing"))
    repaired = damage_names(found)
    clear_unreadable(found, inst.log)
    os.makedirs(HUB_VENV, exist_ok=True)
    with open(marker, "w") as f:
        f.write("a package step is under way; if this file stays, the next bootstrap.py "
                "checks and repairs this environment\n")
    if not os.path.exists(py):
        inst.run([sys.executable, "-m", "venv", HUB_VENV], env=env)
        print("      created " + HUB_VENV)
    elif set(ENSUREPIP) & set(repaired) or not glob.glob(os.path.join(
            HUB_VENV, "lib", "python*", "site-packages", "pip-*.dist-info")):
        # the venv's own creation was cut short: ensurepip puts its packages back
        for name in ENSUREPIP:
            for path in glob.glob(os.path.join(HUB_VENV, "lib", "python*", "site-packages",
                                               name + "-*.dist-info")):
                shutil.rmtree(path)
        inst.run([py, "-m", "ensurepip", "--default-pip"], env=env)
        if interrupted and "pip" not in repaired:
            repaired.append("pip")

    inst.step("uv " + UV_VERSION)
    uv = os.path.join(HUB_VENV, "bin", "uv")
    current = ""
    try:
        current = subprocess.run([uv, "--version"], universal_newlines=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    except OSError:  # absent, or half-written by an interrupted run
        pass
    if UV_VERSION not in current.split() or "uv" in repaired:
        pinned = os.path.join(HUB_VENV, ".hardway-uv-requirement.txt")
        with open(pinned, "w") as f:
            f.write("uv=={} {}\n".format(UV_VERSION, " ".join(
                "--hash=sha256:" + h for h in UV_SHA256)))
        inst.run([py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                  "--require-hashes", "-r", pinned], env=env)
        os.remove(pinned)
        print("      installed uv " + UV_VERSION)

    inst.step("hardway")
    source = args.source or default_source()
    is_dir = os.path.isdir(source)
    build = []
    if is_dir:
        build_pins = os.path.join(source, "hardway", "pins", "build.txt")
        if os.path.isfile(build_pins):
            build = ["--build-constraints", build_pins]
    stamp_path = os.path.join(HUB_VENV, ".hardway-source.json")
    wanted = {"source": source, "plugins": sorted(args.plugin),
              "digest": source_tree_digest(source) if is_dir else None}
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        stamp = None
    cmd = [uv, "pip", "install", "--python", py]
    damaged = [n for n in repaired if n not in (*ENSUREPIP, "uv")]
    checked = None
    if stamp != wanted or damaged or not os.path.exists(os.path.join(HUB_VENV, "bin", "hardway")):
        for _ in range(2):
            # uv reinstalls only what the requirements resolve to: damaged packages
            # outside them (a plugin hardway install added) are named as requirements too
            install_hardway(inst, env, cmd, source, build, args.plugin,
                            damaged + (["hardway"] if is_dir else []))
            if not marked:
                break  # the last run finished (no marker): what uv installed is trusted
            checked = record_damage(HUB_VENV)  # a repair is checked, and retried once
            damaged = damage_names(checked)
            if not damaged:
                break
            repaired += [n for n in damaged if n not in repaired]
            clear_unreadable(checked, inst.log)
        else:
            raise Failure("{} is still damaged after a repair: {}; remove it and run "
                          "bootstrap.py again".format(HUB_VENV, describe_damage(checked)))
        with open(stamp_path, "w") as f:
            json.dump(wanted, f)
        print("      installed hardway from " + source)
    elif repaired:  # only pip or uv were put back
        checked = record_damage(HUB_VENV)
        if damage_names(checked):
            raise Failure("{} is still damaged after a repair: {}; remove it and run "
                          "bootstrap.py again".format(HUB_VENV, describe_damage(checked)))
    if repaired:
        line = "repaired {} after an interrupted install: reinstalled {}".format(
            HUB_VENV, ", ".join(repaired))
        print("      " + line)
        inst.log.write(line + "\n")
    os.remove(marker)

    inst.step("hand over to `hardway install`")
    sys.stdout.flush()
    cmd = [os.path.join(HUB_VENV, "bin", "hardway"), "install"]
    for name in args.admins:
        cmd += ["--admin", name]
    passwords = {k: v for k, v in args.admins.items() if v}
    if passwords:
        cmd.append("--admin-passwords-stdin")
    if args.wheelhouse:
        cmd += ["--wheelhouse", args.wheelhouse]
    if args.traefik_binary:
        cmd += ["--traefik-binary", args.traefik_binary]
    inst.log.write("$ {}\n".format(" ".join(cmd)))
    inst.log.flush()
    full_env = dict(os.environ)
    full_env.update(env)
    proc = subprocess.run(cmd, env=full_env, input=json.dumps(passwords),
                          universal_newlines=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

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
  2. creates the hub environment (a new one when hardway, its pins or Python's minor
     version changed);
  3. installs the pinned uv into it with pip, requiring one of the hashes below;
  4. installs hardway (from --source: default the checkout this file sits in, built into
     a wheel kept for later upgrades; else hardway==HARDWAY_VERSION from the package
     index) without its dependencies, then its dependencies at the versions and sha256
     of the hub.txt that hardway ships (uv --require-hashes: a file whose hash is not
     pinned is refused before anything is installed), then any --plugin (its packages
     that hub.txt pins are hash-checked too);
  5. hands over to ``hardway install``, which does the rest and can be rerun alone.
The full log goes to /var/log/hardway/install.log (root-only).

A source tree has no hash to check: hardway built from a checkout is the code the admin ran
this file from (its build requirements are hash-checked: hardway/pins/build.txt).

Each version of the hub environment is built in a directory of its own under
/opt/hardway/envs, beside the one the running hub uses; /opt/hardway/hub is a symlink
that ``hardway install`` switches to the new one once the new files are in place, and
switches back if the hub does not come up with them. A Python patch update keeps the
environment (the venv's interpreter link still holds); a minor one builds a new one. A
build runs with a marker file in it (``.hardway-installing``); a build that finds its
directory with the marker left (an interrupted run) removes it and starts again.
A --wheelhouse given once is remembered (hardway's install state) and used by every
later run until ``--online``.
"""

import argparse
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
HUB_VENV = PREFIX + "/hub"  # a symlink to the hub environment in use, in ENVS
ENVS = PREFIX + "/envs"  # hardway.paths.Paths.envs
MARKER = ".hardway-installing"  # hardway.pyenv.MARKER
SOURCE_STAMP = ".hardway-source.json"
INSTALL_STATE = "/var/lib/hardway/install-state.json"  # hardway.paths.Paths.install_state
WHEELS = PREFIX + "/wheels"  # hardway.paths.Paths.wheels
JUPYTERHUB_VERSIONS = ("5.5.4", "6.1.1")  # hardway.versions.JUPYTERHUB
PINNED_JUPYTERHUB = JUPYTERHUB_VERSIONS[-1]
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
    p.add_argument("--wheelhouse", metavar="DIR", help="install Python packages only from "
                   "DIR (remembered: later runs, installs and reloads use it too)")
    p.add_argument("--online", action="store_true",
                   help="forget a remembered --wheelhouse: use the package index again")
    p.add_argument("--traefik-binary", metavar="PATH", help="use this Traefik binary")
    p.add_argument("--jupyterhub", metavar="VERSION", choices=JUPYTERHUB_VERSIONS,
                   help="the JupyterHub version (one of {}; default {}, hardway's pin)".format(
                       ", ".join(JUPYTERHUB_VERSIONS), PINNED_JUPYTERHUB))
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
    if args.wheelhouse is not None and args.online:
        raise Refusal("bootstrap.py: --wheelhouse and --online: choose one (--online "
                      "forgets a remembered wheelhouse)")
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


def source_version(root):
    """hardway's version in a checkout (hardway/__init__.py's __version__)."""
    with open(os.path.join(root, "hardway", "__init__.py")) as f:
        m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)", f.read(), re.M)
    return m.group(1) if m else "0"


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def is_complete(venv, wanted):
    """A hub environment whose build finished (no marker) with what ``wanted`` says."""
    if os.path.exists(os.path.join(venv, MARKER)) or not os.path.exists(
            os.path.join(venv, "bin", "hardway")):
        return False
    try:
        with open(os.path.join(venv, SOURCE_STAMP)) as f:
            return json.load(f) == wanted
    except (OSError, ValueError):
        return False


def build_hub_env(inst, env, venv, wanted, pins):
    """Python, the pinned uv, then hardway and its plugins, in a directory of its own. A
    build that was interrupted is never trusted: its directory is removed and built again
    (the uv and pip caches make that quick)."""
    if os.path.lexists(venv):
        shutil.rmtree(venv)
        print("      discarded {} (its build was interrupted)".format(venv))
    os.makedirs(ENVS, exist_ok=True)
    inst.run([sys.executable, "-m", "venv", venv], env=env)
    with open(os.path.join(venv, MARKER), "w") as f:
        f.write("being built; if this file stays, the build was interrupted and the next "
                "bootstrap.py starts it again\n")
    print("      created " + venv)
    inst.step("uv " + UV_VERSION)
    py = os.path.join(venv, "bin", "python")
    pinned = os.path.join(venv, ".hardway-uv-requirement.txt")
    with open(pinned, "w") as f:
        f.write("uv=={} {}\n".format(UV_VERSION, " ".join(
            "--hash=sha256:" + h for h in UV_SHA256)))
    inst.run([py, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes", "-r",
              pinned], env=env)
    os.remove(pinned)
    inst.step("hardway")
    uv = os.path.join(venv, "bin", "uv")
    source = wanted["source"]
    build = []
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, "hardway", "pins",
                                                             "build.txt")):
        build = ["--build-constraints", os.path.join(source, "hardway", "pins", "build.txt")]
    if wanted["wheel"]:
        # a wheel of the checkout, kept: `hardway upgrade` builds later hub environments
        # (another JupyterHub version) from it, without the checkout
        out = os.path.dirname(wanted["wheel"])
        if not os.path.isfile(wanted["wheel"]):
            shutil.rmtree(out, ignore_errors=True)
            inst.run([uv, "build", "--wheel", *build, "--out-dir", out + ".tmp", source],
                     env=env)
            built = glob.glob(os.path.join(out + ".tmp", "hardway-*.whl"))
            if len(built) != 1:
                raise Failure("building hardway from {} gave {}".format(source, built))
            os.rename(built[0], os.path.join(out + ".tmp", os.path.basename(wanted["wheel"])))
            os.rename(out + ".tmp", out)
        source = wanted["wheel"]
    override = None
    if wanted["jupyterhub"]:
        override = os.path.join(venv, ".hardway-overrides.txt")
        with open(override, "w") as f:
            f.write("jupyterhub=={}\n".format(wanted["jupyterhub"]))
    install_hardway(inst, env, venv, [uv, "pip", "install", "--python", py], source, build,
                    wanted["plugins"], override)
    with open(os.path.join(venv, SOURCE_STAMP), "w") as f:
        json.dump(wanted, f)
    os.remove(os.path.join(venv, MARKER))
    print("      installed hardway from " + wanted["source"] + (
        " with JupyterHub " + wanted["jupyterhub"] if wanted["jupyterhub"] else ""))


def read_stamp(venv):
    try:
        with open(os.path.join(venv, SOURCE_STAMP)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def default_source():
    """The checkout this script sits in, if it is one; else hardway from the index at
    this script's version."""
    if HERE is not None:
        root = os.path.dirname(HERE)
        if os.path.isfile(os.path.join(root, "setup.cfg")) and os.path.isdir(
                os.path.join(root, "hardway")):
            return root
    return "hardway==" + HARDWAY_VERSION


def canonical_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


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


def install_hardway(inst, env, venv, cmd, source, build, plugins, override=None):
    """hardway itself without its dependencies, then its dependencies at the versions and
    hashes of the hub.txt it ships (uv --require-hashes), then the --plugin packages (uv
    still checks the hashes of those hub.txt pins). With ``override`` (a JupyterHub chosen
    over the pin, uv --override) the dependencies cannot all be required to have a pinned
    hash: the pinned ones are still checked."""
    inst.run([*cmd, "--no-deps", *build, source], env=env)
    names, pins = installed_hardway(venv)
    with open(pins) as f:
        text = f.read()
    lines, missing = pinned_lines(names, text)
    if missing:
        raise Failure("hardway needs {} but its pins ({}) do not hold {}: this hardway is "
                      "broken".format(", ".join(missing), pins, ", ".join(missing)))
    if override:
        # uv applies a constraint on top of an override: the pins go without the line the
        # override replaces
        kept = [ln for ln in text.replace("\\\n", " ").splitlines() if canonical_name(
            re.split(r"[=<>!~; \[]", ln.strip(), maxsplit=1)[0]) != "jupyterhub"]
        pins = os.path.join(venv, ".hardway-constraints.txt")
        with open(pins, "w") as f:
            f.write("\n".join(kept) + "\n")
        chosen = [n for n in names if canonical_name(n) == "jupyterhub"]
        lines = [ln for ln in lines if not ln.startswith("jupyterhub==")] + chosen
        inst.run([*cmd, "--constraints", pins, "--override", override, *lines], env=env)
    else:
        inst.run([*cmd, "--require-hashes", "--constraints", pins, *lines], env=env)
    if plugins:
        extra = ["--override", override] if override else []
        inst.run([*cmd, "--constraints", pins, *extra, *plugins], env=env)


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


def remembered_wheelhouse():
    """The --wheelhouse an earlier install was given (hardway.ops.install keeps it)."""
    try:
        with open(INSTALL_STATE) as f:
            value = json.load(f).get("wheelhouse")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and os.path.isdir(value) else None


def run(args, inst):
    if args.wheelhouse is None and not args.online:
        args.wheelhouse = remembered_wheelhouse()
        if args.wheelhouse:
            print("      packages only from {} (remembered; --online forgets it)".format(
                args.wheelhouse))
    env = tool_env(args.wheelhouse)
    inst.step("system packages")
    missing = missing_apt_packages(inst)
    if missing:
        inst.run(["apt-get", "update", "-q"], env=env)
        inst.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                  "-o", "Dpkg::Options::=--force-confdef",
                  "-o", "Dpkg::Options::=--force-confold", *missing], env=env)
        print("      apt installed " + ", ".join(missing))

    inst.step("hub environment")
    source = args.source or default_source()
    is_dir = os.path.isdir(source)
    pins = os.path.join(source, "hardway", "pins", "hub.txt") if is_dir else None
    current = os.path.realpath(HUB_VENV) if os.path.isdir(HUB_VENV) else None
    digest = source_tree_digest(source) if is_dir else None
    # a JupyterHub version chosen earlier (versions.jupyterhub, applied by `hardway
    # upgrade`) stays until it is changed there or with --jupyterhub
    jupyterhub = args.jupyterhub or (read_stamp(current).get("jupyterhub") if current else None)
    if jupyterhub == PINNED_JUPYTERHUB:
        jupyterhub = None
    wanted = {"source": source, "plugins": sorted(args.plugin), "digest": digest,
              "wheel": os.path.join(WHEELS, digest[:12], "hardway-{}-py3-none-any.whl".format(
                  source_version(source))) if digest else None,
              "pins": file_digest(pins) if pins and os.path.isfile(pins) else None,
              "python": "{}.{}".format(*sys.version_info[:2]), "uv": UV_VERSION,
              "jupyterhub": jupyterhub}
    if current is not None and is_complete(current, wanted):
        venv = current
        print("      unchanged: " + venv)
    else:
        # a new version is built beside the running one, which keeps serving until
        # `hardway install` switches to the new one once it works
        venv = os.path.join(ENVS, "hub-" + hashlib.sha256(json.dumps(
            wanted, sort_keys=True).encode()).hexdigest()[:12])
        if current is not None:
            have = venv_python_version(current)
            if have is not None and have.split(".")[:2] != wanted["python"].split("."):
                print("      Python changed from {} to {}: a new environment is built "
                      "beside the old one".format(have, wanted["python"]))
        if venv == current:
            # the one in use, but its stamp differs (removed to force a rebuild, say): it
            # is never removed under the running hub; the new build gets its own name
            venv = "{}-{}".format(venv, int(time.time()))
        if is_complete(venv, wanted):
            print("      {} holds this version already (built before): used again".format(venv))
        else:
            build_hub_env(inst, env, venv, wanted, pins)
    inst.n = max(inst.n, 4)  # uv and hardway were steps of the build (or not needed)

    inst.step("hand over to `hardway install`")
    sys.stdout.flush()
    cmd = [os.path.join(venv, "bin", "hardway"), "install"]
    for name in args.admins:
        cmd += ["--admin", name]
    passwords = {k: v for k, v in args.admins.items() if v}
    if passwords:
        cmd.append("--admin-passwords-stdin")
    if args.jupyterhub:
        cmd += ["--jupyterhub", args.jupyterhub]
    if args.wheelhouse:
        cmd += ["--wheelhouse", args.wheelhouse]
    elif args.online:
        cmd.append("--online")
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

#!/usr/bin/env bash
# hardway's whole test suite: lint, unit tests, then integration tests on a booted
# Debian 12 systemd host (systemd-nspawn), and last an install-and-kernel smoke test on
# Debian 13 and Ubuntu 22.04 and 24.04. Run as root on Debian 12; it installs what it
# needs (apt packages, cached roots, a dev venv) and reuses caches when present.
#   sudo ./run-tests.sh              everything
#   sudo ./run-tests.sh -k refusals  extra arguments go to the integration pytest run
set -euo pipefail
cd "$(dirname "$0")"
UV_VERSION=0.13.9
start=$(date +%s)
say() { echo "[run-tests $(( $(date +%s) - start ))s] $*"; }

if [ "$(id -u)" != 0 ]; then
  echo "run-tests.sh: run as root (the integration tests boot a container): sudo $0" >&2
  exit 2
fi

missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v debootstrap >/dev/null || missing+=(debootstrap)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# the real peers the integration tests talk to (see ../shared/PEERS.md)
command -v slapd >/dev/null || missing+=(slapd)       # LDAP
command -v ldapadd >/dev/null || missing+=(ldap-utils)
command -v node >/dev/null || missing+=(nodejs)       # OIDC provider (npm oidc-provider)
command -v npm >/dev/null || missing+=(npm)
command -v pebble >/dev/null || missing+=(pebble)     # ACME CA
command -v nginx >/dev/null || missing+=(nginx-light) # a reverse proxy in front
# a real browser: Debian's chromium driven by Playwright (libatomic1: its node driver)
for p in chromium fonts-liberation fonts-dejavu-core libatomic1; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # slapd: no configuration of its own; the tests run their own server on 127.0.0.1
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  # no service may start on this host (nginx would take port 80): the tests start their
  # own servers on 127.0.0.1 and stop them by PID
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$policy" ] || rm -f "$policy"
fi

# the platform matrix's roots (Debian 13, Ubuntu 22.04, 24.04; a few minutes each when
# absent): built in the background, niced, while the other tests run. test_platforms waits
# for a build under way and fails naming the debootstrap log of one that failed in this run
# (HARDWAY_IT_RUN). Its own session (setsid), so that leaving early stops debootstrap too.
export HARDWAY_IT_RUN="$$-$start"
roots_log="${HARDWAY_IT_CACHE:-/var/cache/hardway-it}/prepare-roots.log"
mkdir -p "$(dirname "$roots_log")"
setsid nice -n 10 python3 integration-tests/harness.py prepare-roots trixie jammy noble \
  >"$roots_log" 2>&1 </dev/null &
roots_pid=$!
stop_roots() {
  if kill -0 "$roots_pid" 2>/dev/null; then
    echo "run-tests.sh: stopping the background root build (pid $roots_pid; log $roots_log)" >&2
    kill -- "-$roots_pid" 2>/dev/null || true
  fi
  wait "$roots_pid" 2>/dev/null || true
}
trap stop_roots EXIT
trap "exit 130" INT
trap "exit 143" TERM
say "building missing platform roots in the background (log: $roots_log)"

if [ ! -x .venv/bin/uv ]; then
  say "creating the dev environment .venv"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install -q "uv==$UV_VERSION"
fi
say "installing hardway and test tools into .venv"
.venv/bin/uv pip install -q --python .venv/bin/python \
  --constraints hardway/pins/hub.txt -e . -r requirements-dev.txt

if [ ! -d integration-tests/oidc/node_modules/oidc-provider ]; then
  say "npm ci (the OIDC provider the tests run)"
  (cd integration-tests/oidc && NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

say "ruff"
.venv/bin/ruff check .

say "import contracts"
.venv/bin/lint-imports

pytest_run() {
  # pytest's exit 5 means no test ran: that is a failure here, never a pass
  set +e
  .venv/bin/pytest "$@"
  rc=$?
  set -e
  if [ $rc -eq 5 ]; then echo "run-tests.sh: no tests were collected by: pytest $*" >&2; exit 1; fi
  if [ $rc -ne 0 ]; then exit $rc; fi
}

say "unit tests"
pytest_run -q -p no:cacheprovider tests

say "integration tests (booted systemd host)"
pytest_run -v -p no:cacheprovider -rA --durations=25 integration-tests "$@"
if ! kill -0 "$roots_pid" 2>/dev/null && ! wait "$roots_pid"; then
  echo "run-tests.sh: the background root build failed: see $roots_log" >&2
fi
say "all passed"

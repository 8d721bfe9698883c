#!/bin/sh
# Regenerate the pins from the .in files: every package at one version, with the sha256 of
# each of its files (all platforms, Python >= 3.10), which uv then requires at install.
#
#   hardway/pins/compile.sh                 keep the versions already pinned, refresh hashes
#   hardway/pins/compile.sh --upgrade       the newest versions the .in files allow
#   hardway/pins/compile.sh --upgrade-package NAME
#
# uv prefers the versions the output file already holds, so without --upgrade nothing moves.
# UV=/path/to/uv to use another uv (e.g. .venv/bin/uv); SSL_CERT_FILE for a proxy's CA.
set -eu
cd "$(dirname "$0")"
UV=${UV:-uv}
for name in hub user build traefik; do
    "$UV" pip compile --quiet --universal --python-version 3.10 --no-header --no-annotate \
        --generate-hashes "$@" "$name.in" -o "$name.txt"
done

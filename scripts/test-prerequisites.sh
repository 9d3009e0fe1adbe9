#!/usr/bin/env bash
# What the test suite needs beside the Python packages, made sure of by `make test` (and so by CI):
# - Debian's chromium, for the status page's browser tests and for rendering Teams cards;
# - Debian's prometheus (promtool: checks /metrics and deploy/prometheus/alerts.yml, runs its unit tests) and
#   prometheus-alertmanager (a real Alertmanager and amtool for the alertmanager notifier's tests; the tests start
#   their own on a free port, the packaged daemon is not used);
# - Debian's nodejs and npm, to install tests/js (Microsoft's Adaptive Cards renderer, markdown-it) from its lock file;
# - the machine's PostgreSQL on 127.0.0.1:5432 (trust auth) for the store conformance suite and the replica tests.
# Each is installed only when missing (a second run takes well under a second); a machine without them (and without
# root to install them) gets one line saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/promtool ] || missing+=(prometheus)
{ [ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/amtool ]; } || missing+=(prometheus-alertmanager)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: the tests need Debian's ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# tests/js/node_modules as its lock file says: `npm ci` again only when the lock file changed since the last one.
stamp=tests/js/node_modules/.installed-from
if ! cmp -s tests/js/package-lock.json "$stamp" 2>/dev/null; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
  cp tests/js/package-lock.json "$stamp"
fi

if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  fi
  if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
    echo "make test: the store tests need PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres" >&2
    exit 1
  fi
fi

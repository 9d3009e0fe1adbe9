#!/usr/bin/env bash
# What the test suite needs beside the Python packages, made sure of by `make test` (and so by CI):
# Debian's chromium for the status page's browser tests, Debian's Alertmanager and promtool (below), and the
# machine's PostgreSQL on 127.0.0.1:5432 (trust auth) for the store conformance suite and the replica tests. All come
# from the machine's package manager; a machine without them (and without root to install them) gets one line saying
# what is missing.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: the browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

# Debian's Prometheus tools: a real Alertmanager (and amtool, same package) for the alertmanager notifier's tests,
# and promtool (package prometheus) to check and unit-test deploy/prometheus/alerts.yml. Nothing is fetched when the
# binaries are there; the tests start their own Alertmanager on a free port (a packaged daemon is not used).
missing=()
[ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/amtool ] || missing+=(prometheus-alertmanager)
[ -x /usr/bin/promtool ] || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: the Alertmanager and promtool tests need Debian's ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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

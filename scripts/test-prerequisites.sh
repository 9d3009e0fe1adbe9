#!/usr/bin/env bash
# What the test suite needs beside the Python packages, made sure of by `make test` (and so by CI):
# Debian's chromium for the status page's browser tests, and the machine's PostgreSQL on 127.0.0.1:5432 (trust
# auth) for the store conformance suite and the replica tests. Both come from the machine's package manager; a
# machine without them (and without root to install them) gets one line saying what is missing.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: the browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
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

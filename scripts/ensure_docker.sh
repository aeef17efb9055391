#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io from Debian's packages and start dockerd
# when none does. Never fails the caller: without an engine, Docker tests skip loudly.
set -u

engine_answers() { docker info >/dev/null 2>&1; }

# The sandbox image is built with debootstrap; bubblewrap is the sandbox's fallback without Docker.
missing=""
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "sandbox: installing$missing from Debian's packages"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >/dev/null 2>&1 \
      || echo "sandbox: WARNING apt-get install$missing failed" >&2
  else
    echo "sandbox: WARNING$missing missing and cannot be installed (need root and apt-get)" >&2
  fi
fi

if engine_answers; then
  echo "docker: engine answers"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "docker: WARNING no engine and cannot install docker.io (need root and apt-get); Docker tests will be skipped" >&2
    exit 0
  fi
  echo "docker: installing docker.io from Debian's packages"
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null 2>&1 \
    || { echo "docker: WARNING apt-get install docker.io failed; Docker tests will be skipped" >&2; exit 0; }
fi
echo "docker: starting dockerd (log: /tmp/assay-dockerd.log)"
# dockerd outlives this script, so it must not keep the caller's descriptors: a lock the caller
# holds with flock, or a pipe a CI runner reads to its end, would stay open as long as dockerd.
(
  for fd in /proc/self/fd/*; do
    n=${fd##*/}
    [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"
  done
  exec setsid dockerd >/tmp/assay-dockerd.log 2>&1 </dev/null
) &
for _ in $(seq 1 60); do
  if engine_answers; then
    echo "docker: engine answers"
    exit 0
  fi
  sleep 1
done
echo "docker: WARNING dockerd did not answer within 60 s (see /tmp/assay-dockerd.log); Docker tests will be skipped" >&2
exit 0

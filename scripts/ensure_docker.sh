#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io from Debian's packages and start dockerd
# when none does. On a developer's machine it never fails the caller: without an engine, Docker
# tests skip loudly. Where ASSAY_REQUIRE names docker (or bwrap), as CI's does, a missing engine
# (or bubblewrap) fails it instead, naming what is missing.
set -u

engine_answers() { docker info >/dev/null 2>&1; }

# required NAME: true when ASSAY_REQUIRE (comma-separated) names NAME.
required() { case ",${ASSAY_REQUIRE:-}," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# unavailable NAME MESSAGE: a warning, or an error and exit 1 when NAME is required.
unavailable() {
  if required "$1"; then
    echo "$1: ERROR $2 (ASSAY_REQUIRE=${ASSAY_REQUIRE} requires $1)" >&2
    exit 1
  fi
  echo "$1: WARNING $2; its tests will be skipped" >&2
}

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

command -v bwrap >/dev/null 2>&1 || unavailable bwrap "bubblewrap is not installed"

if engine_answers; then
  echo "docker: engine answers"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    unavailable docker "no engine and cannot install docker.io (need root and apt-get)"
    exit 0
  fi
  echo "docker: installing docker.io from Debian's packages"
  apt-get update -qq >/dev/null 2>&1
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null 2>&1; then
    unavailable docker "apt-get install docker.io failed"
    exit 0
  fi
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
unavailable docker "dockerd did not answer within 60 s (see /tmp/assay-dockerd.log)"
exit 0

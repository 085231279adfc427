#!/usr/bin/env bash
# Installs and starts what nbuild's tests need on a Debian 12 machine, and
# does nothing that is already done: Nix 2.8 (nix-bin) with a running
# nix-daemon, OpenSSH (test hosts), zstd, xz and bsdcat (differential tests).
set -euo pipefail

need=()
command -v nix-store >/dev/null || need+=(nix-bin)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v zstd >/dev/null || need+=(zstd)
command -v xz >/dev/null || need+=(xz-utils)
command -v bsdcat >/dev/null || need+=(libarchive-tools) # libarchive reads our xz as Nix 2.8 does
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "test-deps: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

socket=/nix/var/nix/daemon-socket/socket
daemon_alive() {
  # FindRoots over the socket succeeds only if a daemon answers on it.
  [ -S "$socket" ] && nix-store --store daemon --gc --print-roots >/dev/null 2>&1
}
if ! daemon_alive; then
  if [ "$(id -u)" -ne 0 ] && [ -d "$(dirname "$socket")" ] && ! [ -x "$(dirname "$socket")" ]; then
    echo "test-deps: $socket is there but $(id -un) may not reach it: Debian's nix-bin lets the nix-users group in (sudo adduser $(id -un) nix-users, then log in again)" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: no nix-daemon listens on $socket; start one as root: nix-daemon &" >&2
    exit 1
  fi
  echo "test-deps: starting nix-daemon" >&2
  mkdir -p /var/log
  nohup nix-daemon >/var/log/nbuild-nix-daemon.log 2>&1 &
  for _ in $(seq 50); do daemon_alive && break; sleep 0.1; done
  daemon_alive || { echo "test-deps: nix-daemon did not start; see /var/log/nbuild-nix-daemon.log" >&2; exit 1; }
fi

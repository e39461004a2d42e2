#!/usr/bin/env bash
# Installs berth from this checkout and starts the daemon on its embedded defaults
# (SQLite + a `dir` backend under /var/lib/berth, admin socket /run/berth/berth.sock).
# For a fresh Debian machine, run as root:   ./install.sh
# Idempotent: running it again rebuilds, keeps any existing config, and leaves a running
# daemon running (restart it with ./install.sh --restart).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAUNCHER=/usr/local/bin/berth
LOG=/var/log/berth.log
PIDFILE=/run/berth.pid
UNIT=/etc/systemd/system/berth.service
NODE_MIN="20.19.0"
RESTART=0
[ "${1:-}" = "--restart" ] && RESTART=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (berth manages mounts and loop devices)"
command -v apt-get >/dev/null || die "this script is for Debian/Ubuntu (apt-get not found)"

# 1. System packages: filesystem tools the loop and btrfs backends run, util-linux for
#    losetup/mount/findmnt, and what better-sqlite3 needs if it has to compile.
PACKAGES=(e2fsprogs xfsprogs btrfs-progs util-linux mount ca-certificates python3 make g++)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
version_ok() { # $1 >= $2 ?
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}
node_ok() { command -v node >/dev/null && command -v npm >/dev/null && version_ok "$(node -p 'process.versions.node')" "$NODE_MIN"; }
node_ok || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
node_ok || die "berth needs Node.js >= $NODE_MIN (found $(node -v 2>/dev/null || echo none)); install a newer nodejs (e.g. from NodeSource) and rerun"

# 2. Dependencies and build (npm ci only when the lockfile changed since the last install).
cd "$REPO"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund
fi
say "building dist/"
npm run --silent build

# 3. The launchers: `berth` (daemon + admin CLI) and `dvdcli` (for Mesos; see docs/flexvolume-dvdcli.md).
install_launcher() { # $1 = path, $2 = bundle in dist/
  say "installing $1"
  cat >"$1.tmp" <<EOF
#!/bin/sh
# launcher written by $REPO/install.sh
exec "$(command -v node)" "$REPO/dist/$2" "\$@"
EOF
  chmod 0755 "$1.tmp"
  mv -f "$1.tmp" "$1"
}
install_launcher "$LAUNCHER" berth.js
install_launcher /usr/local/bin/dvdcli dvdcli.js

# 4. Start the daemon: systemd when it is PID 1, else a background process with a pid file.
#    Nothing is written to /etc except the unit, and only when absent.
ready() { "$LAUNCHER" status >/dev/null 2>&1; }
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ]; then
  if [ ! -f "$UNIT" ]; then
    say "writing $UNIT"
    cat >"$UNIT" <<EOF
[Unit]
Description=berth storage gateway for containers
After=local-fs.target
Before=docker.service kubelet.service

[Service]
ExecStart=$LAUNCHER serve
Restart=on-failure
KillSignal=SIGTERM

[Install]
WantedBy=multi-user.target
EOF
  fi
  systemctl daemon-reload
  systemctl enable berth.service >/dev/null
  if [ "$RESTART" -eq 1 ]; then systemctl restart berth.service; else systemctl start berth.service; fi
else
  # Alive = the pid file names a live, non-zombie process (a killed daemon may linger as a zombie).
  alive() {
    local pid st
    pid="$(cat "$PIDFILE" 2>/dev/null)" && [ -n "$pid" ] || return 1
    st="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
    [ "${st#Z}" = "$st" ]
  }
  if alive && [ "$RESTART" -eq 1 ]; then
    say "stopping berth (pid $(cat "$PIDFILE"))"
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 1 100); do alive || break; sleep 0.1; done
  fi
  if alive; then
    say "berth already running (pid $(cat "$PIDFILE"))"
  else
    say "starting berth serve (log: $LOG)"
    nohup "$LAUNCHER" serve >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
fi

# 5. Wait until the admin API answers.
for _ in $(seq 1 300); do
  if ready; then
    "$LAUNCHER" status
    say "berth is running. Try: berth volume create demo && berth volume ls"
    exit 0
  fi
  if [ "$(ps -p 1 -o comm=)" != "systemd" ] && ! alive; then
    tail -n 20 "$LOG" >&2 || true
    die "the daemon exited during start (see $LOG)"
  fi
  sleep 0.2
done
die "the daemon did not answer within 60 s (see $LOG or journalctl -u berth)"

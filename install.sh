#!/usr/bin/env bash
# Installs berth from this checkout and starts the daemon on its embedded defaults
# (SQLite + a `dir` backend under /var/lib/berth, admin socket /run/berth/berth.sock).
# For a fresh Debian machine, run as root:   ./install.sh
# Idempotent: running it again rebuilds, keeps any existing config, and leaves a running
# daemon running (restart it with ./install.sh --restart, stop it with ./install.sh --stop).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAUNCHER=/usr/local/bin/berth
LOG=/var/log/berth.log
PIDFILE=/run/berth.pid
UNIT=/etc/systemd/system/berth.service
NODE_MIN="20.19.0"
RESTART=0
STOP=0
usage() {
  cat <<'EOF'
usage: ./install.sh [--restart | --stop]
  (no option)  install the system packages, build, install /usr/local/bin/berth and dvdcli,
               start `berth serve` on the embedded defaults (a running daemon is left running)
  --restart    the same, then restart the daemon (e.g. after a kill -9 or a rebuild)
  --stop       only stop the daemon (volumes, mounts and state stay; start it again with ./install.sh)
EOF
}
case "${1:-}" in
  "") ;;
  --restart) RESTART=1 ;;
  --stop) STOP=1 ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[ "$#" -le 1 ] || { usage >&2; exit 2; }

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (berth manages mounts and loop devices)"

# Alive = the pid file names a live, non-zombie process (a killed daemon may linger as a zombie).
alive() {
  local pid st
  pid="$(cat "$PIDFILE" 2>/dev/null)" && [ -n "$pid" ] || return 1
  st="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  [ "${st#Z}" = "$st" ]
}
systemd_pid1() { [ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ]; }
# Stops the background daemon named by the pid file with SIGTERM and waits up to 40 s (it
# lets running operations finish, up to 30 s). The daemon removes its sockets; mounted
# volumes stay mounted for their consumers, and the next start picks them up.
stop_background() {
  alive || return 0
  say "stopping berth (pid $(cat "$PIDFILE"))"
  kill -TERM "$(cat "$PIDFILE")"
  for _ in $(seq 1 400); do alive || break; sleep 0.1; done
  if alive; then die "berth (pid $(cat "$PIDFILE")) did not stop within 40 s"; fi
  rm -f "$PIDFILE"
}
if [ "$STOP" -eq 1 ]; then
  if systemd_pid1 && [ -f "$UNIT" ]; then systemctl stop berth.service; else stop_background; fi
  say "berth is stopped"
  exit 0
fi
command -v apt-get >/dev/null || die "this script is for Debian/Ubuntu (apt-get not found)"

# 1. System packages: filesystem tools the loop and btrfs backends run, util-linux for
#    losetup/mount/findmnt, what better-sqlite3 needs if it has to compile, and etcd-server
#    for cluster mode (README "Cluster mode"; single-node berth does not use it).
PACKAGES=(e2fsprogs xfsprogs btrfs-progs util-linux mount ca-certificates python3 make g++ etcd-server)
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
# berth's system-call addon (native/) is compiled by `npm ci`; rebuild it when its sources
# changed since (a pull with the same lockfile skips npm ci).
ADDON=build/Release/berth_os.node
if [ ! -f "$ADDON" ] || [ -n "$(find native binding.gyp -newer "$ADDON" 2>/dev/null)" ]; then
  say "building the system-call addon"
  npm run --silent native
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
install_launcher /usr/local/bin/dvdcli dvdcli.cjs

# 4. Start the daemon: systemd when it is PID 1, else a background process with a pid file.
#    Nothing is written to /etc except the unit, and only when absent.
ready() { "$LAUNCHER" status >/dev/null 2>&1; }
if systemd_pid1; then
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
  if [ "$RESTART" -eq 1 ]; then stop_background; fi
  if alive; then
    say "berth already running (pid $(cat "$PIDFILE"))"
  else
    say "starting berth serve (log: $LOG)"
    # The log names volumes, labels and options: root and adm (Debian's log readers) only.
    # Made private before the first line is written; the daemon also keeps it at most 0640.
    (umask 077 && : >>"$LOG")
    if getent group adm >/dev/null; then chgrp adm "$LOG" && chmod 0640 "$LOG"; else chmod 0600 "$LOG"; fi
    nohup "$LAUNCHER" serve >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
fi

# 5. Wait until the admin API answers.
for _ in $(seq 1 300); do
  if ready; then
    "$LAUNCHER" status
    say "berth is running. Try: berth volume create demo && berth volume ls"
    say "restart: ./install.sh --restart   stop: ./install.sh --stop   log: $(systemd_pid1 && echo 'journalctl -u berth' || echo "$LOG")"
    exit 0
  fi
  if ! systemd_pid1 && ! alive; then
    tail -n 20 "$LOG" >&2 || true
    die "the daemon exited during start (see $LOG)"
  fi
  sleep 0.2
done
die "the daemon did not answer within 60 s (see $LOG or journalctl -u berth)"

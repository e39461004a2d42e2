#!/usr/bin/env bash
# Makes the Docker managed (v2) plugin from the berth image:
#
#   scripts/image/plugin.sh [--image berth:<version>] [--name berth/berth:<version>] [--force]
#
# The plugin directory is deploy/docker-plugin/config.json plus the image's filesystem as
# rootfs/ (docker create + docker export); `docker plugin create <name> <dir>` turns it into
# a plugin, disabled. Then, as in the README:
#   mkdir -p /var/lib/berth-plugin /run/berth-plugin     # its state and socket directories
#   docker plugin enable berth/berth:<version>
# --force replaces a plugin of that name (disable -f, rm -f: only when no volume uses it).
# Prints the plugin name on the last line of stdout; progress goes to stderr.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$REPO/package.json")"
IMAGE="berth:$VERSION"
NAME="berth/berth:$VERSION"
FORCE=0
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --image) IMAGE="${2:?--image needs NAME:TAG}"; shift 2 ;;
    --name) NAME="${2:?--name needs NAME:TAG}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'plugin.sh: %s\n' "$*" >&2; exit 1; }

docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: build it first (scripts/image/build.sh, --offline without a registry)"
if docker plugin inspect "$NAME" >/dev/null 2>&1; then
  [ "$FORCE" -eq 1 ] || die "plugin $NAME exists (--force replaces it)"
  say "removing the existing plugin $NAME"
  docker plugin disable -f "$NAME" >/dev/null 2>&1 || true
  docker plugin rm -f "$NAME" >/dev/null
fi

# The one directory this script deletes: its own, from mktemp, checked by name and kind.
dir="$(mktemp -d /tmp/berth-plugin-build-XXXXXX)"
[[ "$dir" =~ ^/tmp/berth-plugin-build-[A-Za-z0-9]{6}$ ]] && [ -d "$dir" ] && [ ! -L "$dir" ] || die "mktemp gave an unexpected directory: '$dir'"
container=""
cleanup() {
  [ -z "$container" ] || docker rm -f "$container" >/dev/null 2>&1 || true
  if [[ "${dir:-}" =~ ^/tmp/berth-plugin-build-[A-Za-z0-9]{6}$ ]] && [ -d "$dir" ] && [ ! -L "$dir" ]; then
    rm -rf --one-file-system -- "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$dir/rootfs"
say "exporting $IMAGE into $dir/rootfs"
container="$(docker create "$IMAGE")"
docker export "$container" | tar -x -C "$dir/rootfs"
docker rm "$container" >/dev/null
container=""
cp "$REPO/deploy/docker-plugin/config.json" "$dir/config.json"
say "docker plugin create $NAME"
docker plugin create "$NAME" "$dir" >/dev/null
echo "$NAME"

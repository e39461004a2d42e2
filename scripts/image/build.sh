#!/usr/bin/env bash
# Builds the berth image (Dockerfile at the repository root) with the local Docker engine.
#
#   scripts/image/build.sh [--tag NAME:TAG] [--offline] [--refresh-base]
#
# Connected machine: a plain `docker build` with the Dockerfile's own bases
# (node:20-bookworm-slim for the build stage, debian:bookworm-slim for the runtime).
#
# --offline (no container registry reachable, only a Debian mirror and the npm registry):
# the two base images are made here instead of pulled, and kept in the local image store
# under a content key, so later builds reuse them:
#   berth-base/debian:bookworm-<key>  debootstrap --variant=minbase bookworm from the Debian
#                                     mirror apt uses on this host (BERTH_DEBIAN_MIRROR overrides)
#   berth-base/node:<ver>-<key>       that + this host's Node (>= 20.19), its npm and its
#                                     headers, laid out as in Node's own image (/usr/local)
# Debian bookworm's own nodejs package is 18.x, too old for berth (>= 20.19), hence the host's.
# Locally added CA certificates (/usr/local/share/ca-certificates/*.crt, for a TLS-intercepting
# proxy in front of the npm registry) are handed to the build stage only.
#
# Prints the image name on the last line of stdout; progress goes to stderr.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(node -p "require('$REPO/package.json').version" 2>/dev/null || sed -n 's/^  "version": "\(.*\)",$/\1/p' "$REPO/package.json")"
TAG="berth:$VERSION"
OFFLINE=0
REFRESH=0
NODE_MIN=20.19.0
# Bump when the recipe below changes: the base images' content key includes it.
BASE_RECIPE=2

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs NAME:TAG}"; shift 2 ;;
    --offline) OFFLINE=1; shift ;;
    --refresh-base) REFRESH=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
sha() { sha256sum | cut -c1-16; }

# Temporary directories. This script deletes nothing but what lies in a directory it made
# itself: /tmp/berth-<debootstrap|node-base>-XXXXXX from mktemp, checked by name and kind
# before anything in it is removed, and never followed through a symlink out of it. All of
# them go on exit, however the script ends (set -e, die, Ctrl-C, TERM).
TMP_DIRS=()
is_own_tmp() { [[ "${1:-}" =~ ^/tmp/berth-(debootstrap|node-base)-[A-Za-z0-9]{6}$ ]] && [ -d "$1" ] && [ ! -L "$1" ]; }
# make_tmp KIND: a new directory in MADE_TMP (no subshell: the list must live in this shell).
make_tmp() {
  MADE_TMP="$(mktemp -d "/tmp/berth-${1:?}-XXXXXX")"
  is_own_tmp "$MADE_TMP" || die "mktemp gave an unexpected directory: '$MADE_TMP'"
  TMP_DIRS+=("$MADE_TMP")
}
# parent_in DIR PATH: PATH's directory resolves (symlinks followed) into DIR, one of ours;
# dies otherwise. in_tmp DIR PATH: that, and PATH itself is not a symlink. So a path built
# from an empty or wrong variable, or a link in a debootstrapped tree pointing at the host,
# is refused before anything is written or removed there.
parent_in() {
  local dir="${1:?}" path="${2:?}" real parent
  is_own_tmp "$dir" || die "refusing to touch '$path': '$dir' is not a temporary directory of this script"
  real="$(realpath -e -- "$dir")"
  parent="$(realpath -e -- "$(dirname -- "$path")")" || die "refusing to touch '$path': its directory does not exist"
  case "$parent/" in "$real"/*) ;; *) die "refusing to touch '$path': it resolves outside $dir" ;; esac
}
in_tmp() {
  parent_in "$@"
  [ ! -L "$2" ] || die "refusing to touch '$2': it is a symlink"
}
# rm_in DIR PATH...: removes each PATH (globs expanded by the caller) that is in DIR; a
# symlink is removed itself, never what it points to.
rm_in() {
  local dir="${1:?}" p
  shift
  for p in "$@"; do
    [ -e "$p" ] || [ -L "$p" ] || continue # a glob that matched nothing stays as it was written
    if [ -L "$p" ]; then
      parent_in "$dir" "$p"
      rm -f -- "$p"
    else
      in_tmp "$dir" "$p"
      rm -rf --one-file-system -- "$p"
    fi
  done
}
# debootstrap mounts /proc and /sys inside its target while it works; a failed or killed run
# can leave them there. Unmount whatever is below the directory first, then remove it
# without crossing into another filesystem.
remove_tmp() {
  local dir="$1" m
  is_own_tmp "$dir" || { printf 'build.sh: not removing %s: not a temporary directory of this script\n' "$dir" >&2; return 1; }
  findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r | while IFS= read -r m; do
    umount -- "$m" 2>/dev/null || umount -l -- "$m"
  done
  rm -rf --one-file-system -- "$dir"
}
cleanup() {
  local d
  for d in "${TMP_DIRS[@]}"; do remove_tmp "$d" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Debian mirror apt uses here: the first URI of a deb822 .sources entry or a
# sources.list line that serves bookworm from the main archive.
debian_mirror() {
  if [ -n "${BERTH_DEBIAN_MIRROR:-}" ]; then echo "$BERTH_DEBIAN_MIRROR"; return; fi
  local m=""
  m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      /^URIs:/ { uri=$2 } /^Suites:/ { if ($0 ~ /[ \t]bookworm([ \t]|$)/ && uri !~ /security/) { print uri; exit } }')"
  [ -n "$m" ] || m="$(grep -hE '^deb[[:space:]]+[^[:space:]]+[[:space:]]+bookworm[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2; exit}')"
  echo "${m:-http://deb.debian.org/debian}"
}

# berth-base/debian (name in DEBIAN_BASE): debootstrap minbase, apt lists and caches
# removed, and the sources an official Debian image has (main archive, updates, security)
# so `apt-get update` works.
debian_base() {
  local mirror key root
  mirror="$(debian_mirror)"
  key="$(printf 'bookworm minbase %s recipe%s' "$mirror" "$BASE_RECIPE" | sha)"
  DEBIAN_BASE="berth-base/debian:bookworm-$key"
  if have_image "$DEBIAN_BASE" && [ "$REFRESH" -eq 0 ]; then return; fi
  command -v debootstrap >/dev/null || die "--offline needs debootstrap (apt-get install debootstrap)"
  make_tmp debootstrap
  root="$MADE_TMP"
  say "debootstrap --variant=minbase bookworm from $mirror (a few minutes, once per machine)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >&2 || die "debootstrap failed"
  in_tmp "$root" "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # Slim, as Debian's own -slim images: no documentation, manuals or translations, now or
  # from later apt installs (only copyright files stay).
  in_tmp "$root" "$root/etc/dpkg/dpkg.cfg.d/docker-slim"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  in_tmp "$root" "$root/usr/share/doc"
  find "$root/usr/share/doc" -xdev -mindepth 1 -type f -not -name copyright -delete
  rm_in "$root" "$root/usr/share/man" "$root/usr/share/groff" "$root/usr/share/info" "$root/usr/share/locale" "$root/usr/share/lintian"
  rm_in "$root" "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
  say "importing $DEBIAN_BASE"
  tar --numeric-owner -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$DEBIAN_BASE" >/dev/null
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# berth-base/node (name in NODE_BASE): the Debian base + this host's node (stripped), npm
# and include/node under /usr/local, the layout of Node's own image, so the Dockerfile's
# build stage does the same thing on either base.
node_base() {
  local debian="${1:?}" node prefix ver npm_dir ctx key
  node="$(readlink -f "$(command -v node)")" || die "no node on this host"
  ver="$("$node" -p 'process.versions.node')"
  version_ge "$ver" "$NODE_MIN" || die "the host's Node is $ver; berth needs >= $NODE_MIN"
  prefix="$(dirname "$(dirname "$node")")"
  npm_dir="$prefix/lib/node_modules/npm"
  [ -f "$npm_dir/package.json" ] || die "npm not found at $npm_dir"
  [ -f "$prefix/include/node/node.h" ] || die "Node headers not found at $prefix/include/node"
  key="$( { echo "$debian $BASE_RECIPE"; sha256sum "$node"; cat "$npm_dir/package.json"; } | sha)"
  NODE_BASE="berth-base/node:$ver-$key"
  if have_image "$NODE_BASE" && [ "$REFRESH" -eq 0 ]; then return; fi
  make_tmp node-base
  ctx="$MADE_TMP"
  say "making $NODE_BASE from $node"
  cp "$node" "$ctx/node"
  strip "$ctx/node" 2>/dev/null || true
  cp -a "$npm_dir" "$ctx/npm"
  rm_in "$ctx" "$ctx/npm/docs" "$ctx/npm/man"
  cp -a "$prefix/include/node" "$ctx/include"
  cat >"$ctx/Dockerfile" <<EOF
FROM $debian
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY include /usr/local/include/node
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version && npm --version
CMD ["node"]
EOF
  docker build --network host -q -t "$NODE_BASE" "$ctx" >/dev/null
}

command -v docker >/dev/null || die "docker not found"
args=(--network host -t "$TAG")
if [ "$OFFLINE" -eq 1 ]; then
  debian_base
  node_base "$DEBIAN_BASE"
  args+=(--build-arg "DEBIAN_IMAGE=$DEBIAN_BASE" --build-arg "NODE_IMAGE=$NODE_BASE")
fi
extra_ca="$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)"
[ -z "$extra_ca" ] || args+=(--build-arg "EXTRA_CA_CERTS=$extra_ca")
say "docker build -t $TAG"
start=$SECONDS
docker build "${args[@]}" "$REPO" >&2
say "built $TAG in $((SECONDS - start)) s: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$TAG"

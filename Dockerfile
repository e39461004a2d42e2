# The berth image: the daemon and its CLIs on Debian bookworm with the filesystem tools the
# loop and btrfs backends run. Two stages:
#   build    Node + npm + a C++ toolchain: npm ci (better-sqlite3 compiles for this Node when
#            no prebuilt binary can be fetched; berth's system-call addon, native/, always
#            does), the esbuild bundles in dist/, then only the production dependencies are kept.
#   runtime  plain Debian + the node binary from the build stage + dist/ + the addons +
#            production node_modules: no npm, no compiler, no headers.
#
# On a connected machine the defaults work as they are:
#   docker build -t berth:0.1.0 .
# Without a registry, scripts/image/build.sh --offline makes both base images locally
# (debootstrap + the host's Node) and passes them in as DEBIAN_IMAGE and NODE_IMAGE.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
# python3, make, g++: node-gyp's needs, used when better-sqlite3 has no prebuilt binary for
# this Node (always the case without access to GitHub). npm_config_nodedir: the headers the
# Node image ships, so node-gyp never downloads them.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 make g++ >/dev/null \
 && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
WORKDIR /src
# Extra CA certificates (PEM text) for a registry behind a TLS-intercepting proxy; only this
# stage sees them, the runtime image does not.
ARG EXTRA_CA_CERTS=""
# binding.gyp + native/: berth's system-call addon and the per-call executables' socket
# addon, compiled by npm ci's install script.
COPY package.json package-lock.json binding.gyp ./
COPY native native
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
 && npm ci --no-audit --no-fund \
 && rm -f /tmp/extra-ca.pem
COPY scripts/build.mjs scripts/build.mjs
COPY tsconfig.json ./
COPY backends backends
COPY cli cli
COPY core core
COPY frontends frontends
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/better-sqlite3/deps node_modules/better-sqlite3/src node_modules/better-sqlite3/build/Release/obj* \
      node_modules/better-sqlite3/build/Release/.deps node_modules/better-sqlite3/build/deps \
 && node -e "require('better-sqlite3')(':memory:').prepare('select 1').get()" \
 && node -e "if (require('./build/Release/berth_os.node').constants.LOOP_MAJOR !== 7) process.exit(1)" \
 && node -e "if (typeof require('./build/Release/berth_sock.node').connect !== 'function') process.exit(1)"

FROM ${DEBIAN_IMAGE} AS runtime
# e2fsprogs, xfsprogs, btrfs-progs: mkfs and grow for the loop and btrfs backends;
# mount (mount, umount, losetup, findmnt) and util-linux (blkid, blockdev, fsfreeze...).
# Bookworm's xfsprogs depends on python3 and libicu72 (about 60 MB of this layer). No
# ca-certificates: berth makes no outbound TLS connection (its TLS listener has its own CA).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      e2fsprogs xfsprogs btrfs-progs util-linux mount >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /src/package.json /opt/berth/package.json
COPY --from=build /src/node_modules /opt/berth/node_modules
COPY --from=build /src/dist /opt/berth/dist
COPY --from=build /src/build/Release/berth_os.node /src/build/Release/berth_sock.node /opt/berth/build/Release/
RUN ln -s /opt/berth/dist/berth.js /usr/local/bin/berth \
 && ln -s /opt/berth/dist/dvdcli.cjs /usr/local/bin/dvdcli \
 && ln -s /opt/berth/dist/flexvolume.cjs /usr/local/bin/berth-flexvolume \
 && node --version && berth version
ENV NODE_ENV=production
ENTRYPOINT ["/usr/local/bin/node", "/opt/berth/dist/berth.js"]
CMD ["serve"]

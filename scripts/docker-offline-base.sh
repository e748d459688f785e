#!/usr/bin/env bash
# Prepares this machine to run the unchanged Dockerfile without any container registry:
#
#   1. debian:bookworm-slim  — debootstrap of Debian bookworm (minbase) from the Debian mirror
#                              configured for this machine's apt (plain HTTP), then `docker import`.
#   2. rust:1-bookworm       — debian:bookworm-slim + gcc/libc6-dev (apt) + this machine's own
#                              rustup toolchain copied in (RUSTUP_HOME=/usr/local/rustup,
#                              CARGO_HOME=/usr/local/cargo, as in the official image).
#   3. vendor/ + .cargo/config.toml in the build context — `cargo vendor` on the host, so that
#      `cargo build --locked` inside `docker build` needs no network. Both are git-ignored; the
#      config is regenerated whenever Cargo.lock changes.
#
# Idempotent: each step is skipped when its result already exists (FORCE=1 redoes 1 and 2).
# On a machine with registry access nobody needs this script: `docker build .` pulls the real
# images and cargo downloads the crates.
#
# Environment: DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: read from /etc/apt),
# LOCALZURE_OFFLINE_CACHE (default /var/cache/localzure-docker), SKIP_VENDOR=1.
set -euo pipefail
cd "$(dirname "$0")/.."

SLIM_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1-bookworm
SUITE=bookworm
CACHE=${LOCALZURE_OFFLINE_CACHE:-/var/cache/localzure-docker}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

log() { echo "[offline-base] $*"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
t0=$SECONDS

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  echo "no Docker engine answers; run scripts/install-docker.sh first" >&2
  exit 1
}

# The Debian mirror this machine's apt already uses (deb822 .sources or one-line .list).
apt_uri() { # $1: regex the URI must match
  {
    cat /etc/apt/sources.list.d/*.sources | grep -E '^URIs:' | sed -E 's/^URIs:[[:space:]]*//' | tr ' ' '\n' || true
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list | grep -E '^deb[[:space:]]' |
      sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}' || true
  } 2>/dev/null | grep -E "$1" | head -n1 || true
}

# ---------------------------------------------------------------- 1. debian:bookworm-slim
if have_image "$SLIM_IMAGE" && [ "${FORCE:-0}" != 1 ]; then
  log "$SLIM_IMAGE present: skip"
else
  MIRROR=${DEBIAN_MIRROR:-$(apt_uri '^https?://.*/debian/?$')}
  SECURITY=${DEBIAN_SECURITY_MIRROR:-$(apt_uri '^https?://.*/debian-security/?$')}
  [ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR" >&2; exit 1; }
  MIRROR=${MIRROR%/}
  SECURITY=${SECURITY:-$MIRROR-security}
  SECURITY=${SECURITY%/}
  command -v debootstrap >/dev/null || { echo "debootstrap missing (scripts/install-docker.sh installs it)" >&2; exit 1; }
  mkdir -p "$CACHE"
  tarball=$CACHE/$SUITE-minbase.tar
  if [ ! -s "$tarball" ] || [ "${FORCE:-0}" = 1 ]; then
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
      tail -n 30 "$CACHE/debootstrap.log" >&2
      exit 1
    }
    # Make it look like the official slim image: deb822 sources, no docs/caches.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CLEAN
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
      >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  else
    log "reusing $tarball"
  fi
  log "docker import -> $SLIM_IMAGE"
  docker import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$SLIM_IMAGE" >/dev/null
fi

log "step 1 ($SLIM_IMAGE): $((SECONDS - t0)) s"
t1=$SECONDS

# ---------------------------------------------------------------- 2. rust:1-bookworm
if have_image "$RUST_IMAGE" && [ "${FORCE:-0}" != 1 ]; then
  log "$RUST_IMAGE present: skip"
else
  sysroot=$(rustc --print sysroot)
  toolchain=$(basename "$sysroot")
  rustup_bin=$(command -v rustup)
  rust_version=$(rustc --version | awk '{print $2}')
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/rust-image.XXXXXX")
  trap 'rm -rf "$ctx"' EXIT
  log "copying host toolchain $toolchain ($rust_version) without its docs"
  mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
  # Everything but share/doc (~800 MB of HTML); hard links where possible, so this is quick.
  cp -al "$sysroot" "$ctx/rustup/toolchains/$toolchain" 2>/dev/null ||
    cp -a "$sysroot" "$ctx/rustup/toolchains/$toolchain"
  rm -rf "$ctx/rustup/toolchains/$toolchain/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n\n[overrides]\n' \
    "$toolchain" >"$ctx/rustup/settings.toml"
  cp "$(readlink -f "$rustup_bin")" "$ctx/cargo/bin/rustup"
  for proxy in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do
    ln "$ctx/cargo/bin/rustup" "$ctx/cargo/bin/$proxy"
  done
  cat >"$ctx/Dockerfile" <<DOCKERFILE
# Local stand-in for the official $RUST_IMAGE, made by scripts/docker-offline-base.sh.
FROM $SLIM_IMAGE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config \\
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$rust_version
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN rustup --version && cargo --version && rustc --version
DOCKERFILE
  log "docker build -> $RUST_IMAGE ($(du -sh "$ctx" | cut -f1) context)"
  docker build -q -t "$RUST_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi

log "step 2 ($RUST_IMAGE): $((SECONDS - t1)) s"
t1=$SECONDS

# ---------------------------------------------------------------- 3. vendored crates
if [ "${SKIP_VENDOR:-0}" = 1 ]; then
  log "SKIP_VENDOR=1: not vendoring"
else
  stamp=$(cat Cargo.lock Cargo.toml | sha256sum | cut -d' ' -f1)
  marker="# generated by scripts/docker-offline-base.sh"
  if [ -f .cargo/config.toml ] && ! grep -qF "$marker" .cargo/config.toml; then
    echo ".cargo/config.toml exists and was not generated by this script; move it away first" >&2
    exit 1
  fi
  if [ -f vendor/.localzure-stamp ] && [ "$(cat vendor/.localzure-stamp)" = "$stamp" ] && [ -f .cargo/config.toml ]; then
    log "vendor/ matches Cargo.lock: skip"
  else
    log "cargo vendor --locked (into the build context)"
    rm -f .cargo/config.toml   # vendor from the registry, not from a stale vendor/
    mkdir -p .cargo
    vendor_cfg=$(cargo vendor --locked vendor 2>"${TMPDIR:-/tmp}/localzure-cargo-vendor.log") || {
      cat "${TMPDIR:-/tmp}/localzure-cargo-vendor.log" >&2
      exit 1
    }
    {
      echo "$marker (git-ignored): build from vendor/ offline."
      echo "# Delete this file and vendor/ to go back to the crates registry."
      echo "$vendor_cfg"
    } >.cargo/config.toml
    echo "$stamp" >vendor/.localzure-stamp
  fi
fi
log "step 3 (vendor): $((SECONDS - t1)) s"
log "done in $((SECONDS - t0)) s"

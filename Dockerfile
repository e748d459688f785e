# LocalZure — Azure Service Bus emulator image.
#
#   docker build -t localzure .
#   docker run -d --name localzure -p 5300:5300 -p 5672:5672 -p 443:443 -p 5671:5671 \
#     -v localzure-data:/data \
#     -e LOCALZURE_STORAGE_TYPE=sqlite localzure
#
# Builder: the official Rust image. Runtime: `scratch` with only the binary, the shared
# libraries it links (glibc, libgcc_s) and a passwd entry for its non-root user (~20 MB).
# Works with the classic builder and BuildKit alike. Offline (no registry, no crates.io):
# run scripts/docker-offline-base.sh first; it provides both base images locally and
# vendors the crates into the build context.

FROM rust:1-bookworm AS builder
WORKDIR /src
# .dockerignore keeps this to Cargo.toml, Cargo.lock, src/ (and vendor/ + .cargo/config.toml
# when present for an offline build).
COPY . .
# Build; then lay out the runtime file system in /rootfs: the binary, the dynamic loader and
# every library `ldd` names (at their own paths), passwd/group for the non-root user, /data.
RUN cargo build --release --locked --bin localzure \
 && mkdir -p /rootfs/usr/local/bin /rootfs/etc /rootfs/data \
 && cp target/release/localzure /rootfs/usr/local/bin/localzure \
 && for lib in $(ldd target/release/localzure | grep -o '/[^ ]*'); do \
      cp --parents -L "$lib" /rootfs/; \
    done \
 && echo 'root:x:0:0:root:/root:/sbin/nologin' > /rootfs/etc/passwd \
 && echo 'localzure:x:10001:10001:LocalZure:/data:/sbin/nologin' >> /rootfs/etc/passwd \
 && printf 'root:x:0:\nlocalzure:x:10001:\n' > /rootfs/etc/group \
 && chown 10001:10001 /rootfs/data && chmod 0750 /rootfs/data \
 && chroot /rootfs /usr/local/bin/localzure --version

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="LocalZure" \
      org.opencontainers.image.description="Emulator of Azure Service Bus: REST (and AMQP) on ports 5300/5672, with optional SQLite or JSON persistence in /data" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="scratch"
COPY --from=builder /rootfs/ /
# Named volumes start with this directory's owner (the non-root user).
COPY --from=builder --chown=10001:10001 /rootfs/data /data
ENV LOCALZURE_HOST=0.0.0.0 \
    LOCALZURE_HTTPS_PORT=443 \
    LOCALZURE_AMQPS_PORT=5671 \
    LOCALZURE_TLS_DIR=/data/tls \
    LOCALZURE_SQLITE_PATH=/data/servicebus.db \
    LOCALZURE_JSON_PATH=/data \
    NO_COLOR=1 \
    PATH=/usr/local/bin
# TLS (README "TLS"): HTTPS on 443 and AMQPS on 5671, with a local CA generated into /data/tls
# at first start (`docker exec localzure localzure tls ca > localzure-ca.pem`). The non-root
# user binds 443 because Docker (20.10+) sets net.ipv4.ip_unprivileged_port_start=0 in
# containers; elsewhere set LOCALZURE_HTTPS_PORT to a port above 1023.
# NO_COLOR: plain log lines for `docker logs` and log collectors (`-e NO_COLOR=` for colours).
# The working directory is also where SQLite puts temporary files when the root file system is
# read-only (`docker run --read-only`): keep it on the volume.
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 5300 5672 443 5671
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=2s --timeout=3s --start-period=10s --retries=3 CMD ["localzure", "health"]
ENTRYPOINT ["localzure"]
CMD ["start"]

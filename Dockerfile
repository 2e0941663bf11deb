# syntax=docker/dockerfile:1
# Berth's image for users who build with Docker (docker build -t berth .). The project itself builds
# the same image without a daemon: scripts/build-image. Both give a static binary on scratch, run as
# the non-root user 65532, with a default /etc/berth/config.yml and /var/lib/registry as the data dir.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target x86_64-unknown-linux-gnu -p berth \
 && strip --strip-debug target/x86_64-unknown-linux-gnu/release/berth \
 && cp target/x86_64-unknown-linux-gnu/release/berth /berth
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/berth /rootfs/var/lib/registry /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/var/lib/registry \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nberth:x:65532:65532:berth:/var/lib/registry:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nberth:x:65532:\n' > /rootfs/etc/group \
 && printf 'hosts: files dns\n' > /rootfs/etc/nsswitch.conf \
 && printf 'version: 0.1\nhttp:\n  addr: :5000\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: false\n' > /rootfs/etc/berth/config.yml

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Berth" \
      org.opencontainers.image.description="Self-hosted OCI container registry, a drop-in for registry:2" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
COPY --from=build /rootfs/ /
COPY --from=build /berth /berth
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /var/lib/registry
EXPOSE 5000
ENTRYPOINT ["/berth"]
CMD ["serve", "--config", "/etc/berth/config.yml"]

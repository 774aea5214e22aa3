# The operator image, ghcr.io/pgherd/pgherd: one statically linked binary at /manager (musl, so
# it runs with no libc of its own: as the operator here, and copied by the instance pods' init
# container into CloudNativePG's PostgreSQL images, whatever their distribution), plus the CA
# bundle the object-store clients read. `tests/image_root.rs` runs the same binary in an empty
# root as this image does.
#
#   docker build -t ghcr.io/pgherd/pgherd:0.1.0 .
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN ./scripts/build-static.sh \
 && cp target/x86_64-unknown-linux-musl/release/pgherd /manager

FROM scratch
COPY --from=build /manager /manager
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The release's Deployment runs it as 10001 with a read-only root; its scratch space is the
# /controller emptyDir.
USER 10001:10001
ENTRYPOINT ["/manager"]

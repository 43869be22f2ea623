# voxseg: a compiled single binary on a slim runtime with the Vulkan loader.
#
#   docker build -t voxseg .
#   docker run --gpus all -e VOXSEG_TOKEN=… -p 8080:8080 -v voxseg-data:/data voxseg
#
# The builder needs network access to the npm registry and Deno's release server (for the
# `denort` runtime that `deno compile` embeds).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl unzip \
 && rm -rf /var/lib/apt/lists/*
ARG DENO_VERSION=2.9.6
RUN curl -fsSL "https://github.com/denoland/deno/releases/download/v${DENO_VERSION}/deno-x86_64-unknown-linux-gnu.zip" -o /tmp/deno.zip \
 && unzip -q /tmp/deno.zip -d /usr/local/bin \
 && rm /tmp/deno.zip \
 && deno --version
WORKDIR /src
# Dependencies first, so source edits reuse the cached layer.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY . .
RUN deno task compile --output /out/voxseg

FROM debian:bookworm-slim AS runtime
# Vulkan loader for the host GPU driver (NVIDIA injects its ICD through the container
# runtime); Mesa's software Vulkan (lavapipe) as the CPU fallback.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 voxseg \
 && mkdir -p /data && chown voxseg /data
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    XDG_RUNTIME_DIR=/tmp
COPY --from=build /out/voxseg /usr/local/bin/voxseg
USER voxseg
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["voxseg"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--models", "/data/models", "--data-root", "/data"]

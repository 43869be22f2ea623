# voxseg: the compiled single binary on a slim runtime with the Vulkan loader.
#
#   docker build -t voxseg .
#   docker run --gpus all -e NVIDIA_DRIVER_CAPABILITIES=all -e VOXSEG_TOKEN=… \
#     -e VOXSEG_ALLOWED_HOSTS=gpu-box.example.org -p 8080:8080 -v voxseg-data:/data voxseg
#
# VOXSEG_TOKEN (or VOXSEG_TOKEN_FILE, a mounted secret of "name:token" lines) guards every
# data route; VOXSEG_ALLOWED_HOSTS lists the host names clients use (loopback names and IP
# addresses are always answered, other names get 421: a guard against DNS rebinding).
#
# or `docker compose up` with compose.yaml. The build stage needs the npm registry and Deno's
# release server (for the `denort` runtime `deno compile` embeds); the runtime stage needs
# Debian's mirrors once. Without an NVIDIA GPU the same image runs on Mesa's software Vulkan.

# ---- build: Deno 2.9.6, dependencies cached in their own layer, then `deno compile` -------
FROM denoland/deno:debian-2.9.6 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the cached layer.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY mod.ts ./
COPY src ./src
COPY shaders ./shaders
RUN deno task compile --output /out/voxseg \
 && /out/voxseg help >/dev/null

# ---- runtime: the binary, the Vulkan loader, Mesa's software Vulkan as the CPU fallback ---
FROM debian:bookworm-slim AS runtime
# NVIDIA's container runtime injects the driver and its Vulkan ICD when the container asks for
# the graphics capability; libvulkan1 is the loader that finds it. mesa-vulkan-drivers
# (lavapipe) keeps the image working on machines without a GPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 voxseg \
 && mkdir -p /data/models \
 && chown -R voxseg /data
# Caches on the volume, so they outlive the container: Mesa's compiled pipelines (a fresh
# process on the software adapter otherwise spends about a minute compiling them) and the
# register blocks `voxseg tune` measured for this machine's adapter.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    XDG_RUNTIME_DIR=/tmp \
    MESA_SHADER_CACHE_DIR=/data/.cache/mesa \
    VOXSEG_CACHE_DIR=/data/.cache/voxseg
COPY --from=build /out/voxseg /usr/local/bin/voxseg
USER voxseg
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# /healthz answers any Host and needs no token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# The token comes from the environment (VOXSEG_TOKEN or VOXSEG_TOKEN_FILE); serve refuses
# 0.0.0.0 without one. The access log (JSON lines, no paths) goes to stderr: `docker logs`.
ENTRYPOINT ["voxseg"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-root", "/data", "--models", "/data/models"]

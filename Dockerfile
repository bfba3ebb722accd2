# dungeon-master service image.
#
#   docker build -t dungeon-master .
#   docker run -p 8080:8080 -v dm-data:/app/data \
#     -e DM_AUTH=jwt -e DM_JWT_SECRET=... dungeon-master
#
# The image listens on 0.0.0.0, so the service refuses DM_AUTH=none unless
# DM_ALLOW_INSECURE=true is set (fine for a local demo, never for the internet).
#
# Everything is fetched at build time against the frozen lockfile; at run time
# the service reads only its cache (--cached-only) and runs as the image's
# non-root `deno` user with narrowed permissions.
FROM denoland/deno:2.9.5

WORKDIR /app

# Dependencies first, so that a source-only change reuses this layer.
COPY deno.json deno.lock ./
RUN deno install --frozen

COPY . .
# Source stays root-owned (the service cannot rewrite its own code); the
# service owns only its caches and the data directory.
# The game page's scripts are bundled from TypeScript at start-up with
# Deno.bundle; bundling once here puts the bundler in the cache, since the
# service runs --cached-only.
RUN deno cache --frozen src/main.ts \
  && deno bundle --platform browser src/client/mod.ts > /dev/null \
  && mkdir -p /app/data \
  && chown -R deno:deno /deno-dir /app/node_modules /app/data

USER deno

ENV DM_HOST=0.0.0.0 \
    DM_PORT=8080 \
    DM_SQLITE_PATH=./data/dm.sqlite \
    DENO_NO_UPDATE_CHECK=1 \
    NO_COLOR=1
# OTEL_DENO stays unset: the service runs its own OpenTelemetry SDK, and the
# service refuses to start with OTEL_DENO=true.

EXPOSE 8080
VOLUME ["/app/data"]

# No curl in the image: deno eval (all permissions, no project config) fetches /health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["deno", "eval", "--no-config", "--quiet", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('DM_PORT') ?? '8080'}/health`); await r.body?.cancel(); Deno.exit(r.ok ? 0 : 1);"]

# --allow-net: listener, LLM API, collector, journey-log.
# --allow-read=.: the source tree and node_modules; --allow-write=./data: SQLite only.
# No --allow-sys/--allow-run/--allow-ffi: nothing in the service needs them.
CMD ["deno", "run", "--cached-only", "--frozen", "--no-prompt", \
     "--allow-net", "--allow-env", "--allow-read=.", "--allow-write=./data", \
     "src/main.ts"]

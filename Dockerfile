# walrust in a container: the bundle on Deno's image. Not built in CI (no image registry there).
#
# Build the bundle first; the image only copies it (no source, no npm, no network at build time):
#   deno task bundle && docker build -t walrust .
# Run, with the databases in a volume at /data (walrust keeps its state in .<db>-walrust/ beside
# each database, so /data must be writable by uid 10001; a new named volume takes /data's owner
# from the image) and the config mounted read-only:
#   docker run -d --init -v app-data:/data -v "$PWD/walrust.toml:/etc/walrust.toml:ro" \
#     -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY walrust
# One-off commands replace CMD, e.g.:
#   docker run --rm -v app-data:/data walrust restore app.db -o /data/app.db --bucket s3://b/p
#
# Litestream's pattern, one container for app and replication: walrust restores the database if it
# is missing, starts the app as its child, replicates while the app runs, and exits with the app's
# exit code. `walrust replicate -exec` comes with a later issue; with it, an image built FROM this
# one would end in:
#   COPY app /usr/local/bin/app
#   CMD ["--config", "/etc/walrust.toml", "replicate", "-exec", "/usr/local/bin/app --db /data/app.db"]

# Same Deno as .ci/run (DENO_VERSION).
FROM denoland/deno:2.9.6

RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin walrust \
  && mkdir -p /data /var/cache/walrust \
  && chown walrust:walrust /data /var/cache/walrust
# COPY --chmod needs BuildKit (Docker's default builder since 23.0).
COPY --chmod=0755 dist/walrust /usr/local/bin/walrust

# Deno's own cache (V8 code cache only: the bundle needs no downloads).
ENV DENO_DIR=/var/cache/walrust NO_COLOR=1
USER walrust
WORKDIR /data
VOLUME ["/data"]

# walrust handles SIGTERM itself (sync, drain uploads, exit 0): `docker stop -t 30` leaves time.
ENTRYPOINT ["walrust"]
CMD ["--config", "/etc/walrust.toml", "watch"]

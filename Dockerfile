# One image for the web server (daphne, the default command) and the Celery workers, which
# override the command: see docker-compose.yml.
# Browser libraries (charts) come from the npm registry at build time; nothing loads from a CDN.
FROM node:20-bookworm-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_EXTENSIONS_DIR=/opt/torch-extensions \
    VINTNER_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles

RUN groupadd --system vintner \
    && useradd --system --gid vintner --create-home --home-dir /home/vintner --shell /usr/sbin/nologin vintner \
    && mkdir -p /data \
    && chown vintner:vintner /data

WORKDIR /app

# A C++ compiler: NNCF builds its PyTorch quantization kernels (quantization-aware training).
# bubblewrap: the jail every job runs in (workers/jail.py); setpriv comes with util-linux.
RUN apt-get update && apt-get install -y --no-install-recommends g++ bubblewrap && rm -rf /var/lib/apt/lists/*

# Dependencies first, so that code changes do not reinstall torch.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# Built once here rather than on each worker's first quantization-aware job (about 20 s); the
# telemetry opt-out first (only that module: the rest of the code comes later, to keep this layer).
COPY workers/pipeline/telemetry.py /tmp/vintner_telemetry.py
# (the command workers/kinds/staging.py runs on a host without them; "built" marks them done).
RUN python -c "import sys; sys.path.insert(0, '/tmp'); from vintner_telemetry import telemetry_opt_out; \
    telemetry_opt_out(); from nncf.torch.quantization.extensions import QuantizedFunctionsCPU as F; \
    F.get('Quantize_forward')" \
    && touch /opt/torch-extensions/built && chmod -R a+rX /opt/torch-extensions && rm /tmp/vintner_telemetry.py

COPY . .
# tus.min.js and dagre.min.js name their source maps, which collectstatic's manifest needs beside them.
COPY --from=frontend /frontend/node_modules/uplot/dist/uPlot.iife.min.js /frontend/node_modules/uplot/dist/uPlot.min.css /frontend/node_modules/tus-js-client/dist/tus.min.js /frontend/node_modules/tus-js-client/dist/tus.min.js.map static/vendor/
COPY --from=frontend /frontend/node_modules/hash-wasm/dist/sha256.umd.min.js static/vendor/hash-wasm-sha256.umd.min.js
COPY --from=frontend /frontend/node_modules/@dagrejs/dagre/dist/dagre.min.js /frontend/node_modules/@dagrejs/dagre/dist/dagre.min.js.map static/vendor/

# Static files are collected into the image (STATIC_ROOT=/app/staticfiles) and served by WhiteNoise.
# VINTNER_PRODUCTION=1 here only so that collectstatic writes the hashed files and the manifest that
# production's CompressedManifestStaticFilesStorage needs; the key is a throwaway that only lets the
# settings load. Neither is kept in the image's environment.
ARG BUILD_SECRET_KEY=collectstatic-only-not-a-real-secret
RUN SECRET_KEY="$BUILD_SECRET_KEY" VINTNER_PRODUCTION=1 python manage.py collectstatic --noinput

USER vintner

VOLUME ["/data"]
EXPOSE 8000

CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "webapp.asgi:application"]

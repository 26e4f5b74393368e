# syntax=docker/dockerfile:1
# SmartInvoicing Hub (fbrhub) gRPC server image.
#
#   docker build -t fbrhub .
#   docker run -p 50051:50051 fbrhub            # = fbrhub serve
#   docker run fbrhub --help                    # any other CLI command
#
# Configuration comes from FBRHUB_* environment variables (see README). The server must
# listen on 0.0.0.0 inside the container for the published port to reach it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the SDK, then the hub and its pinned dependencies, into a venv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# .dockerignore keeps the context to the package sources, pyproject.toml and README.md.
COPY . .
# The SDK (fbrhub-sdk: the generated fbrhub.v1 code and the hub's client) first, from its
# own project: the hub requires it by name. grpcio, psycopg[binary], orjson and aiohttp ship
# manylinux wheels for CPython 3.11 to 3.13, so no compiler is needed. Non-editable
# installs: the runtime stage does not need /src.
RUN pip install --upgrade pip \
    && pip install ./clients/hub \
    && pip install . \
    && python -c "import server.commands.main"

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 fbrhub \
    && useradd --system --uid 10001 --gid fbrhub --home-dir /app --create-home \
        --shell /usr/sbin/nologin fbrhub
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 50051

# gRPC health (grpc.health.v1.Health/Check on the overall service ""), probed with the
# grpcio-health-checking package that is already installed, so no grpc_health_probe binary.
# Assumes the default port 50051; adjust if the listen address is changed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; r = g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(), timeout=3); sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]

ENTRYPOINT ["fbrhub"]
CMD ["serve"]

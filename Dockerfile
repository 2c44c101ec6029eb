# WMTP training image for VESSL runs (and any CUDA host): Python 3.11 + the locked project environment via uv.
# PyPI's Linux torch wheels bundle the CUDA runtime, so a slim base works on A100 nodes (the driver comes from
# the host). Build/push: see docs/vessl.md ("Run on VESSL").
FROM python:3.11-slim-bookworm

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VESSL_SAVE_CONFIG=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# 1) dependencies only (cached layer while the lock file is unchanged)
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# 2) the project itself; models and datasets are mounted from VESSL Storage volumes at /app/storage/...
COPY wmtp_core ./wmtp_core
COPY vendor ./vendor
COPY tasks ./tasks
COPY flows ./flows
COPY deployments ./deployments
COPY configs ./configs
COPY storage/tokenizers ./storage/tokenizers
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && wmtp --help > /dev/null

CMD ["wmtp", "--help"]

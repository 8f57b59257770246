# syntax=docker/dockerfile:1
# MLflow tracking server for the cluster: the same MLflow version as the package (pyproject.toml pins 3.17.*),
# plus the PostgreSQL driver for the backend store and boto3 for the proxied s3://mlflow/ artifact store,
# neither of which the upstream image ships. Build context: the repository root.

ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ARG MLFLOW_VERSION=3.17.2
ARG GIT_SHA=unknown

LABEL org.opencontainers.image.title="finegrain-mlflow" \
      org.opencontainers.image.description="MLflow ${MLFLOW_VERSION} tracking server with PostgreSQL and S3 support" \
      org.opencontainers.image.source="https://github.com/finegrain/finegrain" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${MLFLOW_VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/mlflow

RUN pip install "mlflow==${MLFLOW_VERSION}" "psycopg2-binary==2.9.13" "boto3==1.44.5" \
    && python -c "import mlflow, psycopg2, boto3; print('mlflow', mlflow.__version__)"

RUN useradd --uid 1000 --gid 0 --create-home --home-dir /home/mlflow --shell /usr/sbin/nologin mlflow
USER 1000
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]

# MLflow tracking server for the cluster: the same MLflow version as the package (pyproject.toml pins 3.17.*),
# plus the PostgreSQL driver for the backend store and boto3 for the proxied s3://mlflow/ artifact store,
# neither of which the upstream image ships. Build context: the repository root.
# BASE_IMAGE: python:*-slim or the debootstrapped base from images/base.sh (packages go into a venv).
# Packages come from the index pip uses on the building host (PIP_INDEX_URL etc., see images/Dockerfile).
# Plain `docker run finegrain-mlflow:<v>` serves with a SQLite store and local artifacts in $HOME, which the
# image's user owns; on the cluster (manifests/base/mlflow.yaml) the store is PostgreSQL and HOME is /tmp.

ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ARG MLFLOW_VERSION=3.17.2
# The building host's pip settings (images/host-index.sh); pip ignores empty ones and uses its own default.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_TRUSTED_HOST=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/mlflow

RUN python -m venv /opt/venv \
    && pip install "mlflow==${MLFLOW_VERSION}" "psycopg2-binary==2.9.13" "boto3==1.44.5" \
    && python -c "import mlflow, psycopg2, boto3; print('mlflow', mlflow.__version__)"

# The server's default stores (mlflow.db, mlartifacts/) are relative to the working directory: HOME must
# exist and belong to the server's user before WORKDIR points there, or SQLite cannot create its file.
RUN useradd --uid 1000 --gid 0 --no-create-home --home-dir /home/mlflow --shell /usr/sbin/nologin mlflow \
    && mkdir -p /home/mlflow \
    && chown 1000:0 /home/mlflow \
    && chmod 0775 /home/mlflow

ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="finegrain-mlflow" \
      org.opencontainers.image.description="MLflow ${MLFLOW_VERSION} tracking server with PostgreSQL and S3 support" \
      org.opencontainers.image.source="https://github.com/finegrain/finegrain" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${MLFLOW_VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"

USER 1000
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]

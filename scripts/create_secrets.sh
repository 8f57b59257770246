#!/usr/bin/env bash
# Create the three Secrets finegrain's manifests reference, in namespace $NAMESPACE (default finegrain):
#   finegrain-s3     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   (pipeline pods, MLflow, KFP launcher)
#   minio-root       MINIO_ROOT_USER, MINIO_ROOT_PASSWORD       (MinIO itself, bucket-setup Job)
#   mlflow-postgres  POSTGRES_USER, POSTGRES_PASSWORD           (PostgreSQL, MLflow)
# and, only when FINEGRAIN_SUBMIT_TOKEN is set in $SECRETS_ENV, the optional
#   finegrain-submit FINEGRAIN_SUBMIT_TOKEN                     (the submit task, for submit.endpoint)
# Values come from $SECRETS_ENV (default manifests/secrets.env, git-ignored) when set there; anything else is
# random. A Secret that already exists is left alone (so re-deploying never rotates credentials under a
# running MinIO) unless ROTATE=1. Values go through a mode-600 temp file, never the command line or stdout.
set -euo pipefail
NAMESPACE="${NAMESPACE:-finegrain}"
SECRETS_ENV="${SECRETS_ENV:-manifests/secrets.env}"
KUBECTL="${KUBECTL:-kubectl}"

declare -A VALUES=()
if [[ -f "$SECRETS_ENV" ]]; then
  while IFS='=' read -r key value; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    VALUES["$key"]="$value"
  done < "$SECRETS_ENV"
fi

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
value_for() {  # key, random length in bytes (or a fixed default when not a number)
  local v="${VALUES[$1]:-}"
  if [[ -z "$v" && "$2" =~ ^[0-9]+$ ]]; then v="$(random_hex "$2")"; fi
  printf '%s' "${v:-$2}"
}

tmpdir="$(mktemp -d)"
chmod 700 "$tmpdir"
trap 'rm -rf "$tmpdir"' EXIT

make_secret() {  # name key1 len1 key2 len2
  local name="$1"; shift
  if "$KUBECTL" -n "$NAMESPACE" get secret "$name" >/dev/null 2>&1 && [[ "${ROTATE:-0}" != 1 ]]; then
    echo "secret/$name exists; kept (ROTATE=1 replaces it)"
    return
  fi
  local file="$tmpdir/$name.env"
  : > "$file"; chmod 600 "$file"
  while (($#)); do
    printf '%s=%s\n' "$1" "$(value_for "$1" "$2")" >> "$file"
    shift 2
  done
  "$KUBECTL" -n "$NAMESPACE" create secret generic "$name" --from-env-file="$file" \
    --dry-run=client -o yaml | "$KUBECTL" -n "$NAMESPACE" apply -f - >/dev/null
  echo "secret/$name written"
}

"$KUBECTL" get namespace "$NAMESPACE" >/dev/null 2>&1 || "$KUBECTL" create namespace "$NAMESPACE"
# The access key is a user name in MinIO: 20 hex chars; secrets 40; MinIO needs >= 8 / >= 8.
make_secret finegrain-s3 AWS_ACCESS_KEY_ID 10 AWS_SECRET_ACCESS_KEY 20
make_secret minio-root MINIO_ROOT_USER 10 MINIO_ROOT_PASSWORD 20
make_secret mlflow-postgres POSTGRES_USER mlflow POSTGRES_PASSWORD 20
# A token is issued by the scorer, never generated: no value, no Secret (the submit task treats it as optional).
if [[ -n "${VALUES[FINEGRAIN_SUBMIT_TOKEN]:-}" ]]; then
  make_secret finegrain-submit FINEGRAIN_SUBMIT_TOKEN ""
fi

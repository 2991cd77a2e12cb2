#!/usr/bin/env bash
# Seal Kreo's secrets for one cluster: deploy/k8s/overlays/OVERLAY/sealedsecrets.yaml
#
#   deploy/k8s/seal.sh OVERLAY [ENV_FILE]     (ENV_FILE defaults to .env)
#   deploy/k8s/seal.sh --placeholders OVERLAY (the committed, unsealed form)
#
# Reads the values from ENV_FILE (the names of .env.example, plus
# POSTGRES_APP_PASSWORD and POSTGRES_PURGE_PASSWORD, the passwords of the
# kreo_app and kreo_purge roles), builds one
# Secret per set of workloads that read it (the split below: web never gets
# the backup keys, the backups worker never the OIDC client secret) and seals
# each with kubeseal for the cluster's sealed-secrets controller. Plaintext
# only ever goes through a mode-600 temporary file and a pipe, never a
# command line (ps) and never the repository. Offline, seal against the
# controller's public certificate: KUBESEAL_CERT=cert.pem (kubeseal
# --fetch-cert > cert.pem, on a machine that can reach the cluster).
# KUBESEAL_CONTROLLER_NAMESPACE / _NAME override kubeseal's defaults.
set -euo pipefail
shopt -s inherit_errexit
umask 077

here="$(cd "$(dirname "$0")" && pwd)"
namespace=kreo
placeholders=0
if [ "${1:-}" = "--placeholders" ]; then
  placeholders=1
  shift
fi
overlay="${1:?usage: seal.sh [--placeholders] OVERLAY [ENV_FILE]}"
env_file="${2:-.env}"
out_dir="$here/overlays/$overlay"
[ -d "$out_dir" ] || { echo "seal.sh: no overlay $out_dir" >&2; exit 1; }

# name|type|readers|keys: the split. Each key is a variable of ENV_FILE, or
# one built below (DATABASE_URL, REDIS_URL, username, password).
SECRETS=(
  "kreo-app|Opaque|web, worker, worker-backups, beat, migrate (production settings require these of every process)|DJANGO_SECRET_KEY KREO_KEYRING KREO_ACTIVE_KEY_ID KREO_ALTCHA_HMAC_KEY AUDIT_SIGNING_KEY AUDIT_ARCHIVE_KEY AUDIT_EVENT_KEY BACKUP_AGE_RECIPIENT"
  "kreo-s3|Opaque|web, worker, worker-backups (files, audit archives, backups, erasure ledger)|AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"
  "kreo-db-app|kubernetes.io/basic-auth|web, worker, worker-backups, beat; CloudNativePG (role kreo_app)|username password DATABASE_URL"
  "kreo-db-owner|kubernetes.io/basic-auth|migrate; CloudNativePG (role kreo_owner, owner of the database)|username password DATABASE_URL"
  "kreo-db-purge|kubernetes.io/basic-auth|worker (the audit archive's purge); CloudNativePG (role kreo_purge)|username password DATABASE_URL"
  "kreo-redis-server|Opaque|redis (requirepass)|password"
  "kreo-redis-client|Opaque|web, worker, worker-backups, beat, migrate|REDIS_URL"
  "kreo-oidc|Opaque|web only|KREO_OIDC_CLIENT_SECRET"
  "kreo-smtp|Opaque|web, worker|EMAIL_HOST_PASSWORD"
  "kreo-backup-keys|Opaque|worker-backups only (key A of copies 1 and 3, the manifest MAC key)|BACKUP_ENCRYPTION_KEY BACKUP_MANIFEST_KEY"
)

# The in-cluster addresses (base/postgres.yaml, base/redis.yaml) and the CA
# files the pods mount: verify-full, and rediss:// whose certificate the app
# checks against REDIS_CA_FILE (set in each workload).
DB_HOST="kreo-db-rw.$namespace.svc"
DB_TLS="sslmode=verify-full&sslrootcert=/etc/kreo/pg-ca/ca.crt"
REDIS_HOST="kreo-redis.$namespace.svc"

value_of() { # KEY SECRET: the value of one key of one secret
  local key="$1" secret="$2" password
  case "$secret/$key" in
    kreo-db-app/username) echo kreo_app ;;
    kreo-db-owner/username) echo kreo_owner ;;
    kreo-db-purge/username) echo kreo_purge ;;
    kreo-db-app/password | kreo-db-app/DATABASE_URL)
      password="$(need POSTGRES_APP_PASSWORD)"
      [ "$key" = password ] && echo "$password" \
        || echo "postgres://kreo_app:$password@$DB_HOST:5432/kreo?$DB_TLS" ;;
    kreo-db-owner/password | kreo-db-owner/DATABASE_URL)
      password="$(need POSTGRES_PASSWORD)"
      [ "$key" = password ] && echo "$password" \
        || echo "postgres://kreo_owner:$password@$DB_HOST:5432/kreo?$DB_TLS" ;;
    kreo-db-purge/password | kreo-db-purge/DATABASE_URL)
      password="$(need POSTGRES_PURGE_PASSWORD)"
      [ "$key" = password ] && echo "$password" \
        || echo "postgres://kreo_purge:$password@$DB_HOST:5432/kreo?$DB_TLS" ;;
    kreo-redis-server/password) need REDIS_PASSWORD ;;
    kreo-redis-client/REDIS_URL)
      password="$(need REDIS_PASSWORD)"
      echo "rediss://:$password@$REDIS_HOST:6379/0" ;;
    *) need "$key" ;;
  esac
}

need() { # the value of NAME in ENV_FILE; refuses an empty one
  local value
  value="$(grep -E "^$1=" "$env_file" | tail -n 1 | cut -d= -f2-)" || true
  value="${value%\"}"; value="${value#\"}"
  if [ -z "$value" ]; then
    echo "seal.sh: $1 is empty or missing in $env_file" >&2
    exit 1
  fi
  printf '%s\n' "$value"
}

if [ "$placeholders" = 0 ]; then
  [ -r "$env_file" ] || { echo "seal.sh: cannot read $env_file" >&2; exit 1; }
  command -v kubeseal >/dev/null || { echo "seal.sh: kubeseal is not installed" >&2; exit 1; }
  command -v kubectl >/dev/null || { echo "seal.sh: kubectl is not installed" >&2; exit 1; }
  seal_args=(--format yaml --scope strict)
  [ -n "${KUBESEAL_CERT:-}" ] && seal_args+=(--cert "$KUBESEAL_CERT")
  [ -n "${KUBESEAL_CONTROLLER_NAMESPACE:-}" ] && seal_args+=(--controller-namespace "$KUBESEAL_CONTROLLER_NAMESPACE")
  [ -n "${KUBESEAL_CONTROLLER_NAME:-}" ] && seal_args+=(--controller-name "$KUBESEAL_CONTROLLER_NAME")
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

target="$out_dir/sealedsecrets.yaml"
tmp_out="$(mktemp "$out_dir/.sealedsecrets.XXXXXX")"
trap 'rm -f "$tmp_out"; [ -n "${work:-}" ] && rm -rf "$work"' EXIT
{
  echo "# Generated by deploy/k8s/seal.sh; do not edit (README \"Kubernetes\")."
  if [ "$placeholders" = 1 ]; then
    echo "# PLACEHOLDERS, not ciphertext: the repository has no cluster to seal"
    echo "# for. \`deploy/k8s/seal.sh $overlay .env\` replaces each with kubeseal's"
    echo "# output; until then the controller cannot unseal them and no pod starts."
  fi
  for entry in "${SECRETS[@]}"; do
    IFS='|' read -r name type readers keys <<<"$entry"
    echo "---"
    echo "# Read by: $readers."
    if [ "$placeholders" = 1 ]; then
      printf 'apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n'
      printf '  name: %s\n  namespace: %s\nspec:\n  encryptedData:\n' "$name" "$namespace"
      for key in $keys; do
        printf '    %s: PLACEHOLDER-run-deploy/k8s/seal.sh\n' "$key"
      done
      printf '  template:\n    metadata:\n      name: %s\n      namespace: %s\n' "$name" "$namespace"
      printf '    type: %s\n' "$type"
    else
      : >"$work/$name.env"
      for key in $keys; do
        value="$(value_of "$key" "$name")"
        printf '%s=%s\n' "$key" "$value" >>"$work/$name.env"
      done
      kubectl create secret generic "$name" --namespace "$namespace" \
        --type "$type" --from-env-file "$work/$name.env" \
        --dry-run=client --output yaml \
        | kubeseal "${seal_args[@]}"
      rm -f "$work/$name.env"
    fi
  done
} >"$tmp_out"
mv "$tmp_out" "$target"
echo "seal.sh: wrote $target"

#!/usr/bin/env bash
# Makes, once, the Secrets of the PostgreSQL roles that the CloudNativePG Clusters (deploy/k8s/base/postgres)
# and the pods read: for each database, <db>-db-owner (role <db>_owner: owns the database, runs the migrations)
# and <db>-db-app (role <db>_app: DML only, what the service runs as), type kubernetes.io/basic-auth with a random
# 32-character password. A Secret that exists is left as it is; to rotate a password, change its Secret
# (CloudNativePG sets the role's new password) and restart the pods that read it.
# usage: NAMESPACE=escrow deploy/k8s/database-secrets.sh   (before `kubectl apply`; needs kubectl and the namespace)
set -euo pipefail
namespace=${NAMESPACE:-escrow}
DATABASES=(contracts escrow billing notifications gateway)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT  # the password goes to kubectl in a file, never on a command line
for db in "${DATABASES[@]}"; do
  for role in owner app; do
    name=$db-db-$role
    if kubectl -n "$namespace" get secret "$name" >/dev/null 2>&1; then echo "secret $name exists"; continue; fi
    printf '%s' "${db}_$role" >"$work/username"
    (umask 077; LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$work/password") || true
    kubectl -n "$namespace" create secret generic "$name" --type=kubernetes.io/basic-auth \
      --from-file=username="$work/username" --from-file=password="$work/password" >/dev/null
    # as CloudNativePG's examples label the Secrets of managed roles: the operator watches them for changes
    kubectl -n "$namespace" label secret "$name" cnpg.io/reload=true >/dev/null
    echo "secret $name created"
  done
done

# Sourced by env.sh: the local platform's secrets (Kafka SCRAM passwords, PostgreSQL role passwords, HTTP bearer
# tokens), generated at first use and kept in $SECRETS_DIR (mode 0700, files 0600). Never committed (the work
# directory is outside the repository), never logged: print one only where a client asks for it
# (deploy/local/credentials.sh).
#   secret NAME   prints the secret NAME (made now when it does not exist yet), e.g. `secret kafka-escrow`
# Names in use: kafka-<principal>, pg-<role>, http-<principal>.
export SECRETS_DIR=${SECRETS_DIR:-$ESCROW_WORK/secrets}

secret() {
  local file=$SECRETS_DIR/$1 tmp
  [[ $1 =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || { echo "secret: bad name '$1'" >&2; return 1; }
  if [[ ! -s $file ]]; then
    install -d -m 700 "$SECRETS_DIR"
    tmp=$(mktemp "$SECRETS_DIR/.new.XXXXXX")  # mode 0600
    # 32 characters of [A-Za-z0-9]: safe in URLs, JAAS files, pg_hba and key=value lines without quoting
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$tmp" || true
    # Two processes may race to make the same secret: the first rename wins, the other keeps the winner's.
    mv -n "$tmp" "$file"; rm -f "$tmp"
  fi
  cat "$file"
}

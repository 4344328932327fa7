#!/bin/sh
# Runs once, when the PostgreSQL volume is new: one database per service, and the payment gateway simulator's.
set -eu
for database in $ESCROW_DATABASES; do
  echo "creating database $database"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -c "CREATE DATABASE \"$database\""
done

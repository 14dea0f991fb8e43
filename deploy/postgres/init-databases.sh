#!/bin/sh
# Runs once, on the first start of the postgres service (empty data volume), from
# /docker-entrypoint-initdb.d. Creates one role and database per owner:
#   mlflow   -> databases mlflow (backend store) and mlflow_auth (basic-auth users)
#   modelreg -> database modelreg (the ledger; modelreg migrates its schema itself)
# Passwords come from MLFLOW_DB_PASSWORD and LEDGER_DB_PASSWORD (deploy/.env) and are
# passed as psql variables, so they are quoted by psql, never spliced into SQL.
set -eu
: "${MLFLOW_DB_PASSWORD:?}" "${LEDGER_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" -v ledger_password="$LEDGER_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE modelreg LOGIN PASSWORD :'ledger_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE modelreg OWNER modelreg;
REVOKE ALL ON DATABASE mlflow, mlflow_auth, modelreg FROM PUBLIC;
SQL

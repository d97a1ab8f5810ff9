#!/bin/sh
# Patroni's post_bootstrap (postgres_scripts/ha/patroni.yml): run once, on the node that
# made the cluster, with a superuser connection string as its last argument. Makes the
# API's role and its database; the API creates the schema on first start.
set -eu
: "${INVSYS_DB_PASSWORD:?INVSYS_DB_PASSWORD must be set for Patroni (the API role's password)}"
psql -v ON_ERROR_STOP=1 -v password="$INVSYS_DB_PASSWORD" "$1" <<'SQL'
CREATE ROLE invsys LOGIN PASSWORD :'password';
CREATE DATABASE invsys OWNER invsys;
SQL

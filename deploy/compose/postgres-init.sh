#!/usr/bin/env bash
# PostgreSQL's image runs this once, on an empty data directory
# (/docker-entrypoint-initdb.d): one database per Vitrine service, each owned by a role
# of the same name whose password comes from the environment (docker-compose.yml passes
# APP_DB_PASSWORD, STORAGE_DB_PASSWORD, IMPORT_DB_PASSWORD, AUDIT_DB_PASSWORD). The services create their
# own tables (migrations) as those owners; no role can reach another's database.
#
# Safe to run again (existing roles get their password reset, existing databases are
# kept). VITRINE_DB_PREFIX (default empty) prefixes every role and database name: only
# e2e/compose.rs sets it, to run this script against a shared test server.
set -euo pipefail

prefix="${VITRINE_DB_PREFIX:-}"
psql_admin() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" \
        --dbname "${POSTGRES_DB:-postgres}" "$@"
}

for service in app storage import audit; do
    password_var="${service^^}_DB_PASSWORD"
    password="${!password_var:?$password_var is not set}"
    name="${prefix}${service}"
    # psql variables (:'name', :"name") quote the values; nothing is spliced into SQL.
    psql_admin -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
ALTER ROLE :"name" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "vitrine: database and role ${name} ready"
done

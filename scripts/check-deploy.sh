#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster (docs/deploy.md):
#   1. docker-compose.yml against the Compose Specification's JSON schema (check-jsonschema's
#      bundled copy), then parsed and interpolated by a Compose implementation
#      (podman-compose `config`, which needs no engine) with a .env made from .env.example;
#      and the `elk` profile resolved, its Logstash pipeline and index template checked
#      against each other (Logstash and Elasticsearch are not run);
#   2. every Kubernetes resource in deploy/k8s against the Kubernetes schemas bundled in
#      kubernetes-validate (strict), the KEDA ones against @kubernetes-models/keda's
#      (generated from KEDA's CRDs), plus the cross-checks in deploy/check/validate_k8s.py.
# The validators are installed on first use, pinned, from PyPI and npm into
# $VITRINE_DEPLOY_TOOLS (default target/deploy-tools). Exits non-zero on any failure.
# What compose passes to each program, and the programs starting from it, are tested by
# e2e/compose.rs (cargo test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS="${VITRINE_DEPLOY_TOOLS:-$PWD/target/deploy-tools}"
K8S_VERSION=1.34.0
PY_PINS=(check-jsonschema==0.39.0 kubernetes-validate==1.37.0 podman-compose==1.6.0 PyYAML==6.0.4)
NPM_PINS=(@kubernetes-models/keda@2.0.0)

log() { printf '[check-deploy] %s\n' "$*"; }

install_tools() {
    local stamp="$TOOLS/.installed"
    local want="${PY_PINS[*]} ${NPM_PINS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    log "installing ${PY_PINS[*]} (PyPI) and ${NPM_PINS[*]} (npm) into $TOOLS"
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS/npm"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PINS[@]}"
    # @kubernetes-models 2.x declares node >= 22; it runs on the machine's Node 20 (the
    # validation below fails on a broken resource there, as checked by hand).
    (cd "$TOOLS/npm" && npm init -y >/dev/null \
        && npm install --no-audit --no-fund --loglevel=error "${NPM_PINS[@]}" >/dev/null)
    echo "$want" >"$stamp"
}

install_tools
PY="$TOOLS/venv/bin"

log "1. compose: Compose Specification schema"
"$PY/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

log "1. compose: podman-compose config (parse, merge keys, .env interpolation)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The project directory as compose sees it: the compose file, the files it mounts, and a
# .env as docs/deploy.md makes it (.env.example, keys, passwords).
cp docker-compose.yml "$work/"
mkdir -p "$work/deploy" && cp -r deploy/compose "$work/deploy/"
{
    cat .env.example
    for var in APP_STORAGE_KEYS IMPORT_STORAGE_KEYS URL_SIGNING_KEYS AUDIT_KEYS AUDIT_ADMIN_KEYS; do
        echo "$var=k1:$(head -c 32 /dev/urandom | base64)"
    done
    echo "JWT_HS256_SECRET=$(head -c 32 /dev/urandom | base64)"
    for var in POSTGRES_PASSWORD APP_DB_PASSWORD STORAGE_DB_PASSWORD IMPORT_DB_PASSWORD AUDIT_DB_PASSWORD \
        RABBITMQ_PASSWORD MINIO_ROOT_PASSWORD AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
        echo "$var=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    done
} >"$work/.env"
(cd "$work" && "$PY/podman-compose" --dry-run config >"$work/resolved.yml")
"$PY/python" - "$work/resolved.yml" <<'PY'
import sys, yaml
resolved = yaml.safe_load(open(sys.argv[1]))
services = resolved["services"]
want = {"postgres", "rabbitmq", "minio", "minio-init", "storage", "app", "import-api", "import-worker", "web", "audit"}
assert set(services) == want, f"services: {sorted(services)}"
for name, service in services.items():
    for key, value in (service.get("environment") or {}).items():
        assert "${" not in str(value), f"{name} {key} not interpolated: {value}"
assert services["app"]["environment"]["AUTH_DEV_LOGIN"] == "false", "dev login must be off"
assert services["import-worker"]["deploy"]["replicas"] == 2
print(f"[check-deploy] podman-compose resolved {len(services)} services")
PY

log "1. compose: the elk profile (podman-compose --profile elk config; Logstash itself is not run)"
(cd "$work" && "$PY/podman-compose" --profile elk --dry-run config >"$work/resolved-elk.yml")
"$PY/python" - "$work/resolved-elk.yml" deploy/compose/elk <<'PY'
import json, os, sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
assert {"elasticsearch", "logstash", "audit"} <= set(services), f"services: {sorted(services)}"
mounted = {}
for volume in services["logstash"]["volumes"]:
    source, target = str(volume).split(":")[:2]
    mounted[target] = os.path.join(sys.argv[2], os.path.basename(source))
pipeline = open(mounted["/usr/share/logstash/pipeline/logstash.conf"]).read()
for needle in ('exchange => "audit"', 'exchange_type => "topic"', 'document_id => "%{id}"'):
    assert needle in pipeline, f"logstash.conf lacks {needle}"
template_path = pipeline.split('template => "')[1].split('"')[0]
template = json.load(open(mounted[template_path]))
assert template["index_patterns"] == ["vitrine-audit-*"], template["index_patterns"]
assert "vitrine-audit-" in pipeline
print(f"[check-deploy] elk profile resolved {len(services)} services; pipeline and template consistent")
PY

log "2. kubernetes: schemas (Kubernetes $K8S_VERSION strict, KEDA CRDs) and cross-checks"
cp deploy/check/validate_keda.mjs "$TOOLS/npm/"
mapfile -t manifests < <(ls deploy/k8s/*.yaml | grep -v '/kustomization.yaml$')
"$PY/python" deploy/check/validate_k8s.py "$K8S_VERSION" .env.example "${manifests[@]}" \
    | node "$TOOLS/npm/validate_keda.mjs"
log "all deployment files valid"

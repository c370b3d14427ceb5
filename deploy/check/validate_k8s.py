"""Validates every resource under deploy/k8s against the Kubernetes schemas bundled in
kubernetes-validate (strict: unknown fields are errors). KEDA's resources have no
schema there: they are printed as JSON lines on stdout for validate_keda.mjs, and any
other kind without a schema is an error. Also checks what no schema can: every variable
a ConfigMap or Secret holds is listed in .env.example, and the ScaledObject watches the
queues the workers use (<IMPORT_QUEUE_PREFIX>.file and .listing).
Usage: python validate_k8s.py K8S_VERSION ENV_EXAMPLE FILE…
"""
import json
import sys

import kubernetes_validate
import yaml

version, env_example, files = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(env_example) as f:
    listed = {
        line.split("=", 1)[0].strip()
        for line in f
        if "=" in line and not line.lstrip().startswith("#")
    }
failures = 0
checked = 0
prefix = None
queues = set()
for path in files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        what = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in ("ConfigMap", "Secret"):
            data = {**doc.get("data", {}), **doc.get("stringData", {})}
            unlisted = sorted(set(data) - listed)
            if unlisted:
                failures += 1
                print(f"FAIL {what}: not in .env.example: {unlisted}", file=sys.stderr)
            prefix = data.get("IMPORT_QUEUE_PREFIX", prefix)
        if doc.get("kind") == "ScaledObject":
            queues |= {t["metadata"].get("queueName") for t in doc["spec"]["triggers"]}
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            print(json.dumps({"file": path, "resource": doc}))
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
            print(f"ok   {what} (Kubernetes {version}, strict)", file=sys.stderr)
        except kubernetes_validate.ValidationError as e:
            failures += 1
            print(f"FAIL {what}: {e.message} at {'.'.join(map(str, e.path))}", file=sys.stderr)
        except kubernetes_validate.SchemaNotFoundError as e:
            failures += 1
            print(f"FAIL {what}: no schema ({e})", file=sys.stderr)
want = {f"{prefix or 'import'}.file", f"{prefix or 'import'}.listing"}
if queues != want:
    failures += 1
    print(f"FAIL the ScaledObject watches {sorted(queues)}, the workers use {sorted(want)}", file=sys.stderr)
if failures or not checked:
    print(f"{failures} resource(s) failed, {checked} passed", file=sys.stderr)
    sys.exit(1)

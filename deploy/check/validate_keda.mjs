// Validates KEDA resources (JSON lines on stdin, from validate_k8s.py) against the
// ScaledObject / TriggerAuthentication schemas of @kubernetes-models/keda (generated from
// KEDA's CRDs). Exits non-zero on any failure, or when there was nothing to check.
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin });
let checked = 0;
let failed = 0;
for await (const line of lines) {
  if (!line.trim()) continue;
  const { file, resource } = JSON.parse(line);
  const what = `${file}: ${resource.kind}/${resource.metadata?.name}`;
  const [group, version] = resource.apiVersion.split("/");
  let Model;
  try {
    const module = await import(`@kubernetes-models/keda/${group}/${version}/${resource.kind}`);
    Model = module[resource.kind];
  } catch (e) {
    console.error(`FAIL ${what}: no KEDA model for ${resource.apiVersion} ${resource.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.error(`ok   ${what} (KEDA CRD schema)`);
    checked++;
  } catch (e) {
    console.error(`FAIL ${what}: ${e.message}`);
    failed++;
  }
}
if (failed || !checked) {
  console.error(`${failed} KEDA resource(s) failed, ${checked} passed`);
  process.exit(1);
}

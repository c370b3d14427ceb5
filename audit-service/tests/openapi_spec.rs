//! The committed OpenAPI spec (`docs/openapi/audit.json`) must match the code.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p audit-service --test openapi_spec`.

use std::path::PathBuf;

#[test]
fn committed_spec_is_current() {
    let generated =
        serde_json::to_string_pretty(&audit_service::openapi_document()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/audit.json");
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/audit.json is stale; run UPDATE_OPENAPI=1 cargo test -p audit-service --test openapi_spec"
    );
}

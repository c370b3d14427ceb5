//! The committed OpenAPI spec (`docs/openapi/import-service.json`) must match the code.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p import-service --test openapi_spec`.

use std::path::PathBuf;

use serde_json::Value;

fn generated() -> String {
    serde_json::to_string_pretty(&import_service::openapi_document()).expect("spec") + "\n"
}

#[test]
fn committed_spec_is_current() {
    let generated = generated();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/import-service.json");
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("docs/openapi")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write the spec");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/import-service.json is stale; run UPDATE_OPENAPI=1 cargo test -p import-service --test openapi_spec"
    );
}

/// Every endpoint is documented, needs the seller token, and documents its errors with
/// the shared envelope.
#[test]
fn every_endpoint_is_documented_with_bearer_security_and_the_error_envelope() {
    let spec: Value = serde_json::from_str(&generated()).expect("json");
    let expected = [
        ("post", "/import/google-drive"),
        ("post", "/import/dropbox"),
        ("get", "/imports"),
        ("get", "/imports/{id}"),
        ("get", "/imports/{id}/events"),
        ("get", "/imports/{id}/items"),
        ("post", "/imports/{id}/retry"),
        ("get", "/images"),
        ("get", "/images/{id}"),
    ];
    let paths = spec["paths"].as_object().expect("paths");
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "operations: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "bearer scheme"
    );
    for (method, path) in expected {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert_eq!(
            op["security"],
            serde_json::json!([{ "bearer": [] }]),
            "{method} {path}: security"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        assert!(responses.contains_key("401"), "{method} {path}: no 401");
        for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{method} {path} {status}: not the error envelope"
            );
        }
    }
    assert!(
        spec["components"]["schemas"]["ErrorEnvelope"].is_object(),
        "the ErrorEnvelope schema is in the document"
    );
}

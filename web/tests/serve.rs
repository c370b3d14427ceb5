//! The web service as a browser sees it: the page, its assets with the right types,
//! `/config.json`, the security headers on every answer, and JSON errors for the rest.

use std::path::Path;

use axum::body::Body;
use axum::Router;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use service_kit::config::Env;
use tower::ServiceExt;
use web::{vars, WebConfig};

const APP: &str = "http://app.example.test:8081";
const IMPORT: &str = "http://import.example.test:8083/";
const STORAGE: &str = "https://images.example.test";

fn config_with(extra: &[(&str, &str)]) -> Result<WebConfig, service_kit::config::ConfigError> {
    let mut pairs = vec![
        (vars::APP_API_URL, APP),
        (vars::IMPORT_API_URL, IMPORT),
        (vars::STORAGE_PUBLIC_URL, STORAGE),
    ];
    pairs.extend_from_slice(extra);
    WebConfig::from_env(&Env::from_pairs(pairs))
}

fn router() -> Router {
    web::router(&config_with(&[]).expect("the default assets and the URLs above are valid"))
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("ASCII header")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn get(router: Router, path: &str) -> Answer {
    let response = router
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_content_security_policy() {
    let answer = get(router(), "/").await;

    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header(header::CONTENT_TYPE).starts_with("text/html"));
    let page = String::from_utf8(answer.body.clone()).expect("UTF-8 page");
    assert!(page.contains(r#"<script type="module" src="/assets/js/main.js">"#));
    let csp = answer.header(header::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "img-src 'self' data: blob: https://images.example.test;",
        "connect-src 'self' http://app.example.test:8081 http://import.example.test:8083 https://images.example.test;",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive:?} missing from {csp:?}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(answer.header(header::X_FRAME_OPTIONS), "DENY");
    assert_eq!(answer.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(answer.header(header::CACHE_CONTROL), "no-cache");
    assert!(answer.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn index_html_is_the_same_page() {
    let root = get(router(), "/").await;
    let index = get(router(), "/index.html").await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.body, root.body);
}

#[tokio::test]
async fn config_json_tells_the_page_where_each_api_is() {
    let answer = get(router(), "/config.json").await;

    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header(header::CONTENT_TYPE)
        .starts_with("application/json"));
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "app_api_url": APP,
            "import_api_url": IMPORT.trim_end_matches('/'),
            "storage_url": STORAGE,
        })
    );
}

#[tokio::test]
async fn every_asset_the_page_loads_is_served_with_its_type() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let page = std::fs::read_to_string(assets.join("index.html")).expect("index.html");
    // The page's own references, then every module under assets/js (imports included).
    let mut paths: Vec<String> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert!(paths.len() >= 3, "index.html references {paths:?}");
    let mut dirs = vec![assets.join("assets/js")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("assets/js").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(&assets).expect("under static/");
                paths.push(format!("/{}", relative.display()));
            }
        }
    }

    for path in &paths {
        let answer = get(router(), path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let expected = match Path::new(path).extension().and_then(|e| e.to_str()) {
            Some("js") => "javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("{path}: an asset of unexpected kind {other:?}"),
        };
        let content_type = answer.header(header::CONTENT_TYPE);
        assert!(
            content_type.contains(expected),
            "{path} served as {content_type}"
        );
        assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(answer.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    }
}

#[tokio::test]
async fn a_missing_asset_or_route_is_a_json_404() {
    for path in [
        "/assets/js/nope.js",
        "/nope",
        "/api/imports",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let answer = get(router(), path).await;
        assert!(
            answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.status
        );
        let page = String::from_utf8_lossy(&answer.body);
        assert!(!page.contains("[package]"), "{path} leaked a file: {page}");
        if answer.status == StatusCode::NOT_FOUND {
            let code = answer.json()["error"]["code"].as_str().map(str::to_owned);
            assert!(code.is_some(), "{path}: {page}");
        }
        assert!(
            answer.headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "{path}: {:?}",
            answer.headers
        );
    }
}

#[tokio::test]
async fn readiness_fails_when_the_page_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "<!doctype html>").expect("index");
    let assets = dir.path().to_str().expect("UTF-8 path");
    let router = web::router(&config_with(&[(vars::ASSETS_DIR, assets)]).expect("config"));
    assert_eq!(get(router.clone(), "/readyz").await.status, StatusCode::OK);

    std::fs::remove_file(dir.path().join("index.html")).expect("remove");

    let answer = get(router, "/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.json().to_string().contains("assets"),
        "{}",
        answer.json()
    );
}

#[test]
fn an_assets_dir_without_the_page_is_refused_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let assets = dir.path().to_str().expect("UTF-8 path");

    let error = config_with(&[(vars::ASSETS_DIR, assets)]).expect_err("no index.html");

    assert_eq!(error.var, vars::ASSETS_DIR);
    assert!(error.message.contains("index.html"), "{}", error.message);
}

#[test]
fn an_api_url_that_is_not_http_is_refused_naming_the_variable() {
    for (var, value) in [
        (vars::APP_API_URL, "ftp://app.example.test"),
        (vars::IMPORT_API_URL, "not a url"),
        (vars::STORAGE_PUBLIC_URL, "javascript:alert(1)"),
    ] {
        let error = config_with(&[(var, value)]).expect_err(value);
        assert_eq!(error.var, var, "{value}");
    }
}

#[test]
fn a_bad_bind_address_is_refused_naming_the_variable() {
    let error = config_with(&[(vars::BIND, "localhost")]).expect_err("no port");
    assert_eq!(error.var, vars::BIND);
}

//! Seller JWT verification: every refusal named in the issue, each checked by code.
//!
//! JWKS tests run a tiny fake identity provider on 127.0.0.1:0 and count its
//! requests; the HTTP client has proxies disabled so nothing leaves loopback. Keys
//! are the TEST-ONLY fixtures in `tests/fixtures/jwt/`.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use service_kit::auth::{
    AuthConfig, AuthError, DevIssuer, HmacSecret, Seller, SellerAuth, SellerId,
};
use service_kit::ApiError;
use tower::ServiceExt;

const ISSUER: &str = "test-issuer";
const AUDIENCE: &str = "vitrine";
const SECRET: &[u8; 32] = b"test-only-hs256-secret-32-bytes!";

const RSA_PRIVATE: &str = include_str!("fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt/rsa-public.pem");
const RSA2_PRIVATE: &str = include_str!("fixtures/jwt/rsa2-private.pem");
const EC_PRIVATE: &str = include_str!("fixtures/jwt/ec-private.pem");
const RSA_JWK: &str = include_str!("fixtures/jwt/rsa-1.jwk.json");
const RSA2_JWK: &str = include_str!("fixtures/jwt/rsa-2.jwk.json");
const EC_JWK: &str = include_str!("fixtures/jwt/ec-1.jwk.json");

// ---------------------------------------------------------------- helpers

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 300})
}

fn set(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs_token(kid: Option<&str>, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        kid,
        claims,
    )
}

fn rs_token(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::RS256, &key, Some(kid), claims)
}

fn rs2_token(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::RS256, &key, Some(kid), claims)
}

fn es_token(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::ES256, &key, Some(kid), claims)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn hs_config() -> AuthConfig {
    AuthConfig::new(ISSUER, AUDIENCE)
        .with_hs256_secret(HmacSecret::from_bytes(SECRET.to_vec()).unwrap())
}

fn hs_auth() -> SellerAuth {
    SellerAuth::new(hs_config(), http_client())
}

async fn refusal(auth: &SellerAuth, token: &str) -> &'static str {
    match auth.verify(token).await {
        Ok(claims) => panic!("token accepted: {claims:?}"),
        Err(err) => {
            // Messages never echo the token.
            assert!(token.len() < 8 || !err.to_string().contains(token));
            err.code()
        }
    }
}

async fn accepted(auth: &SellerAuth, token: &str) -> SellerId {
    match auth.verify(token).await {
        Ok(claims) => claims.seller_id,
        Err(err) => panic!("token refused: {} ({err})", err.code()),
    }
}

/// A fake identity provider serving `/jwks.json`, counting requests.
struct FakeIdp {
    url: reqwest::Url,
    hits: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

#[derive(Clone)]
struct IdpState {
    hits: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

async fn jwks_handler(State(state): State<IdpState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        return (status, "identity provider is having a bad day").into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

fn jwk(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

impl FakeIdp {
    async fn start(keys: &[&str]) -> FakeIdp {
        let state = IdpState {
            hits: Arc::default(),
            keys: Arc::new(Mutex::new(keys.iter().map(|k| jwk(k)).collect())),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks_handler))
            .route("/garbage", get(|| async { "<html>not a jwks</html>" }))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeIdp {
            url: format!("http://{addr}/jwks.json").parse().unwrap(),
            hits: state.hits,
            keys: state.keys,
            status: state.status,
            delay_ms: state.delay_ms,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set_keys(&self, keys: &[&str]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| jwk(k)).collect();
    }

    /// HS256 secret and this JWKS.
    fn config(&self) -> AuthConfig {
        hs_config().with_jwks_url(self.url.clone())
    }

    fn auth(&self) -> SellerAuth {
        SellerAuth::new(self.config(), http_client())
    }
}

// ---------------------------------------------------------------- shape of the token

#[tokio::test]
async fn an_empty_token_is_missing_token() {
    assert_eq!(refusal(&hs_auth(), "").await, "missing-token");
}

#[tokio::test]
async fn malformed_tokens() {
    let auth = hs_auth();
    let valid = hs_token(Some("dev"), &claims("seller-1"));
    let parts: Vec<&str> = valid.split('.').collect();
    let cases = [
        "garbage".to_owned(),
        format!("{}.{}", parts[0], parts[1]), // two segments
        format!("{}.{}.{}.x", parts[0], parts[1], parts[2]), // four segments
        format!("!!{}.{}.{}", parts[0], parts[1], parts[2]), // not base64url
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]), // padding
        format!("a.{}.{}", parts[1], parts[2]), // undecodable header
        format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(r#"{"typ":"JWT"}"#), parts[1], parts[2]), // no alg
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"HS256","kid":1}"#),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], "!!!"), // bad signature encoding
    ];
    for token in &cases {
        assert_eq!(refusal(&auth, token).await, "malformed-token", "{token}");
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let auth = hs_auth();
    let payload = b64(claims("seller-1").to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"none","kid":"dev"}"#,
        r#"{"alg":"None"}"#,
    ] {
        let token = format!("{}.{payload}.", b64(header));
        assert_eq!(
            refusal(&auth, &token).await,
            "unsupported-algorithm",
            "{header}"
        );
    }
}

#[tokio::test]
async fn algorithms_other_than_hs256_rs256_es256_are_refused() {
    let auth = hs_auth();
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET),
        Some("dev"),
        &claims("seller-1"),
    );
    assert_eq!(refusal(&auth, &hs512).await, "unsupported-algorithm");
    let payload = b64(claims("seller-1").to_string());
    for alg in ["PS256", "EdDSA", "RS512", "ES384", "HS384"] {
        let token = format!(
            "{}.{payload}.{}",
            b64(format!(r#"{{"alg":"{alg}"}}"#)),
            b64("sig")
        );
        assert_eq!(
            refusal(&auth, &token).await,
            "unsupported-algorithm",
            "{alg}"
        );
    }
}

// ---------------------------------------------------------------- HS256

#[tokio::test]
async fn a_valid_hs256_token_is_accepted_with_or_without_kid() {
    let auth = hs_auth();
    let claims_in = set(claims("seller-42"), "jti", json!("token-1"));
    let verified = auth
        .verify(&hs_token(Some("dev"), &claims_in))
        .await
        .unwrap();
    assert_eq!(verified.seller_id.as_str(), "seller-42");
    assert_eq!(verified.issuer, ISSUER);
    assert_eq!(verified.expires_at, claims_in["exp"].as_u64().unwrap());
    assert_eq!(verified.issued_at, claims_in["iat"].as_u64());
    assert_eq!(verified.token_id.as_deref(), Some("token-1"));
    assert_eq!(verified.key_id.as_deref(), Some("dev"));

    assert_eq!(
        accepted(&auth, &hs_token(None, &claims("seller-42")))
            .await
            .as_str(),
        "seller-42"
    );
    // `aud` may be an array that contains ours.
    let multi = set(claims("seller-42"), "aud", json!(["other", AUDIENCE]));
    accepted(&auth, &hs_token(None, &multi)).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_invalid_signature() {
    let other = EncodingKey::from_secret(b"another-test-only-secret-32-byte");
    let token = sign(Algorithm::HS256, &other, Some("dev"), &claims("seller-1"));
    assert_eq!(refusal(&hs_auth(), &token).await, "invalid-signature");
}

#[tokio::test]
async fn a_tampered_payload_is_invalid_signature() {
    let auth = hs_auth();
    for token in [
        hs_token(Some("dev"), &claims("seller-1")),
        hs_token(None, &claims("seller-1")),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(claims("seller-2").to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(refusal(&auth, &tampered).await, "invalid-signature");
    }
}

#[tokio::test]
async fn audience_is_required_and_checked() {
    let auth = hs_auth();
    let wrong = set(claims("seller-1"), "aud", json!("someone-else"));
    assert_eq!(
        refusal(&auth, &hs_token(None, &wrong)).await,
        "invalid-audience"
    );
    let wrong_list = set(claims("seller-1"), "aud", json!(["a", "b"]));
    assert_eq!(
        refusal(&auth, &hs_token(None, &wrong_list)).await,
        "invalid-audience"
    );
    let missing = without(claims("seller-1"), "aud");
    assert_eq!(
        refusal(&auth, &hs_token(None, &missing)).await,
        "invalid-audience"
    );
}

#[tokio::test]
async fn issuer_is_required_and_checked() {
    let auth = hs_auth();
    let wrong = set(claims("seller-1"), "iss", json!("evil-issuer"));
    assert_eq!(
        refusal(&auth, &hs_token(None, &wrong)).await,
        "invalid-issuer"
    );
    let missing = without(claims("seller-1"), "iss");
    assert_eq!(
        refusal(&auth, &hs_token(None, &missing)).await,
        "invalid-issuer"
    );
    let array = set(claims("seller-1"), "iss", json!([ISSUER]));
    assert_eq!(
        refusal(&auth, &hs_token(None, &array)).await,
        "invalid-issuer"
    );
}

#[tokio::test]
async fn expiry_is_required_and_checked_with_leeway() {
    let auth = hs_auth(); // leeway 30 s
    let expired = set(claims("seller-1"), "exp", json!(now() - 120));
    assert_eq!(
        refusal(&auth, &hs_token(None, &expired)).await,
        "token-expired"
    );
    let within_leeway = set(claims("seller-1"), "exp", json!(now() - 10));
    accepted(&auth, &hs_token(None, &within_leeway)).await;

    let strict = SellerAuth::new(
        AuthConfig {
            leeway: Duration::ZERO,
            ..hs_config()
        },
        http_client(),
    );
    assert_eq!(
        refusal(&strict, &hs_token(None, &within_leeway)).await,
        "token-expired"
    );

    let missing = without(claims("seller-1"), "exp");
    assert_eq!(
        refusal(&auth, &hs_token(None, &missing)).await,
        "malformed-token"
    );
    let not_a_number = set(claims("seller-1"), "exp", json!("tomorrow"));
    assert_eq!(
        refusal(&auth, &hs_token(None, &not_a_number)).await,
        "malformed-token"
    );
}

#[tokio::test]
async fn a_leeway_above_30_seconds_is_capped() {
    let lenient = SellerAuth::new(
        AuthConfig {
            leeway: Duration::from_secs(3600),
            ..hs_config()
        },
        http_client(),
    );
    let expired = set(claims("seller-1"), "exp", json!(now() - 120));
    assert_eq!(
        refusal(&lenient, &hs_token(None, &expired)).await,
        "token-expired"
    );
}

#[tokio::test]
async fn not_before_is_checked_when_present() {
    let auth = hs_auth();
    let future = set(claims("seller-1"), "nbf", json!(now() + 120));
    assert_eq!(
        refusal(&auth, &hs_token(None, &future)).await,
        "token-not-yet-valid"
    );
    let within_leeway = set(claims("seller-1"), "nbf", json!(now() + 10));
    accepted(&auth, &hs_token(None, &within_leeway)).await;
}

#[tokio::test]
async fn the_subject_must_be_a_seller_id() {
    let auth = hs_auth();
    for sub in [
        json!("a/b"),
        json!(""),
        json!("x".repeat(129)),
        json!("sp ace"),
        json!(42),
    ] {
        let bad = set(claims("placeholder"), "sub", sub.clone());
        assert_eq!(
            refusal(&auth, &hs_token(None, &bad)).await,
            "invalid-subject",
            "{sub}"
        );
    }
    let missing = without(claims("seller-1"), "sub");
    assert_eq!(
        refusal(&auth, &hs_token(None, &missing)).await,
        "invalid-subject"
    );
    accepted(&auth, &hs_token(None, &claims("auth0:abc@example.com"))).await;
}

#[tokio::test]
async fn an_unknown_kid_is_unknown_key() {
    let auth = hs_auth();
    assert_eq!(
        refusal(&auth, &hs_token(Some("other"), &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(
        refusal(&auth, &rs_token("rsa-1", &claims("seller-1"))).await,
        "unknown-key"
    );
}

#[tokio::test]
async fn without_hs256_a_token_without_kid_is_unknown_key() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    let auth = SellerAuth::new(
        AuthConfig::new(ISSUER, AUDIENCE).with_jwks_url(idp.url.clone()),
        http_client(),
    );
    assert_eq!(
        refusal(&auth, &hs_token(None, &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(idp.hits(), 0, "no kid must not trigger a JWKS fetch");
}

// ---------------------------------------------------------------- JWKS

#[tokio::test]
async fn rs256_and_es256_from_the_jwks_are_accepted_and_cached() {
    let idp = FakeIdp::start(&[RSA_JWK, EC_JWK]).await;
    let auth = idp.auth();
    assert_eq!(
        accepted(&auth, &rs_token("rsa-1", &claims("seller-rs")))
            .await
            .as_str(),
        "seller-rs"
    );
    assert_eq!(
        accepted(&auth, &es_token("ec-1", &claims("seller-es")))
            .await
            .as_str(),
        "seller-es"
    );
    accepted(&auth, &rs_token("rsa-1", &claims("seller-rs"))).await;
    assert_eq!(idp.hits(), 1, "the JWKS is fetched once and cached");
    // HS256 keeps working alongside.
    accepted(&auth, &hs_token(Some("dev"), &claims("seller-hs"))).await;
}

#[tokio::test]
async fn jwks_tokens_get_the_same_claim_checks() {
    let idp = FakeIdp::start(&[RSA_JWK, EC_JWK]).await;
    let auth = idp.auth();
    let expired = set(claims("seller-1"), "exp", json!(now() - 120));
    assert_eq!(
        refusal(&auth, &rs_token("rsa-1", &expired)).await,
        "token-expired"
    );
    let wrong_aud = set(claims("seller-1"), "aud", json!("other"));
    assert_eq!(
        refusal(&auth, &es_token("ec-1", &wrong_aud)).await,
        "invalid-audience"
    );
    let token = rs_token("rsa-1", &claims("seller-1"));
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("seller-2").to_string()),
        parts[2]
    );
    assert_eq!(refusal(&auth, &tampered).await, "invalid-signature");
    // Signed by rsa-2's private key but claiming rsa-1.
    assert_eq!(
        refusal(&auth, &rs2_token("rsa-1", &claims("seller-1"))).await,
        "invalid-signature"
    );
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let idp = FakeIdp::start(&[RSA_JWK, EC_JWK]).await;
    let auth = idp.auth();
    // The classic attack: HS256 "signed" with the RSA public key PEM as the HMAC
    // secret, naming the RSA key.
    let rsa_pem_as_secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let forged = sign(
        Algorithm::HS256,
        &rsa_pem_as_secret,
        Some("rsa-1"),
        &claims("seller-1"),
    );
    assert_eq!(refusal(&auth, &forged).await, "unsupported-algorithm");
    // Same without a kid: it goes to the HS256 secret and fails its signature.
    let forged = sign(
        Algorithm::HS256,
        &rsa_pem_as_secret,
        None,
        &claims("seller-1"),
    );
    assert_eq!(refusal(&auth, &forged).await, "invalid-signature");
    // Also without any HS256 secret configured.
    let jwks_only = SellerAuth::new(
        AuthConfig::new(ISSUER, AUDIENCE).with_jwks_url(idp.url.clone()),
        http_client(),
    );
    let forged = sign(
        Algorithm::HS256,
        &rsa_pem_as_secret,
        Some("rsa-1"),
        &claims("seller-1"),
    );
    assert_eq!(refusal(&jwks_only, &forged).await, "unsupported-algorithm");
    // Other mismatches: ES256 naming the RSA key, RS256 naming the HS256 key id.
    assert_eq!(
        refusal(&auth, &es_token("rsa-1", &claims("seller-1"))).await,
        "unsupported-algorithm"
    );
    assert_eq!(
        refusal(&auth, &rs_token("dev", &claims("seller-1"))).await,
        "unsupported-algorithm"
    );
    assert_eq!(
        refusal(&auth, &rs_token("ec-1", &claims("seller-1"))).await,
        "unsupported-algorithm"
    );
}

#[tokio::test]
async fn key_rotation_a_new_kid_is_refetched_and_accepted() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    let config = AuthConfig {
        jwks_min_refetch_interval: Duration::from_millis(300),
        ..idp.config()
    };
    let auth = SellerAuth::new(config, http_client());
    accepted(&auth, &rs_token("rsa-1", &claims("seller-1"))).await;
    assert_eq!(idp.hits(), 1);

    idp.set_keys(&[RSA_JWK, RSA2_JWK]);
    // Right after a fetch the refetch is rate-limited.
    assert_eq!(
        refusal(&auth, &rs2_token("rsa-2", &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(idp.hits(), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    accepted(&auth, &rs2_token("rsa-2", &claims("seller-2"))).await;
    assert_eq!(idp.hits(), 2);
    accepted(&auth, &rs_token("rsa-1", &claims("seller-1"))).await;
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn an_unknown_kid_twice_within_a_minute_fetches_once() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    let auth = idp.auth(); // default: at most one refetch a minute
    assert_eq!(
        refusal(&auth, &rs_token("nope", &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(
        refusal(&auth, &rs_token("nope", &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(
        refusal(&auth, &rs_token("also-nope", &claims("seller-1"))).await,
        "unknown-key"
    );
    assert_eq!(idp.hits(), 1);
    // The one fetch did load the real key.
    accepted(&auth, &rs_token("rsa-1", &claims("seller-1"))).await;
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let idp = FakeIdp::start(&[RSA_JWK, EC_JWK]).await;
    idp.delay_ms.store(200, Ordering::SeqCst);
    let auth = idp.auth();
    let tokens: Vec<String> = (0..8)
        .map(|i| match i % 3 {
            0 => rs_token("rsa-1", &claims("seller-1")),
            1 => es_token("ec-1", &claims("seller-1")),
            _ => rs_token(&format!("unknown-{i}"), &claims("seller-1")),
        })
        .collect();
    let results = futures::future::join_all(tokens.iter().map(|t| auth.verify(t))).await;
    for (i, result) in results.iter().enumerate() {
        match i % 3 {
            0 | 1 => assert!(result.is_ok(), "{i}: {result:?}"),
            _ => assert_eq!(result.as_ref().unwrap_err().code(), "unknown-key"),
        }
    }
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_503() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url: reqwest::Url = format!("http://{closed}/jwks.json").parse().unwrap();
    let auth = SellerAuth::new(hs_config().with_jwks_url(url), http_client());
    let err = auth
        .verify(&rs_token("rsa-1", &claims("seller-1")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "identity-provider-unavailable");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = ApiError::from(err).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], "identity-provider-unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "detail leaked: {body}"
    );

    // HS256 tokens do not need the identity provider.
    accepted(&auth, &hs_token(Some("dev"), &claims("seller-1"))).await;
}

#[tokio::test]
async fn identity_provider_errors_are_503_and_backed_off() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    idp.status.store(500, Ordering::SeqCst);
    let auth = idp.auth();
    let token = rs_token("rsa-1", &claims("seller-1"));
    assert_eq!(
        refusal(&auth, &token).await,
        "identity-provider-unavailable"
    );
    assert_eq!(
        refusal(&auth, &token).await,
        "identity-provider-unavailable"
    );
    assert_eq!(idp.hits(), 1, "a failed fetch is not retried at once");

    let garbage: reqwest::Url = idp.url.join("/garbage").unwrap();
    let auth = SellerAuth::new(hs_config().with_jwks_url(garbage), http_client());
    assert_eq!(
        refusal(&auth, &token).await,
        "identity-provider-unavailable"
    );
}

#[tokio::test]
async fn cached_keys_survive_an_identity_provider_outage() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    let config = AuthConfig {
        jwks_max_age: Duration::ZERO,
        jwks_min_refetch_interval: Duration::ZERO,
        ..idp.config()
    };
    let auth = SellerAuth::new(config, http_client());
    accepted(&auth, &rs_token("rsa-1", &claims("seller-1"))).await;
    idp.status.store(503, Ordering::SeqCst);
    accepted(&auth, &rs_token("rsa-1", &claims("seller-1"))).await;
    assert_eq!(
        idp.hits(),
        2,
        "the stale keys were refreshed (and the failure tolerated)"
    );
    // A removed key stops verifying once the refresh succeeds.
    idp.status.store(200, Ordering::SeqCst);
    idp.set_keys(&[EC_JWK]);
    assert_eq!(
        refusal(&auth, &rs_token("rsa-1", &claims("seller-1"))).await,
        "unknown-key"
    );
}

#[tokio::test]
async fn a_known_key_does_not_wait_for_a_running_refresh() {
    let idp = FakeIdp::start(&[RSA_JWK]).await;
    let config = AuthConfig {
        jwks_max_age: Duration::ZERO,
        jwks_min_refetch_interval: Duration::ZERO,
        ..idp.config()
    };
    let auth = SellerAuth::new(config, http_client());
    let token = rs_token("rsa-1", &claims("seller-1"));
    accepted(&auth, &token).await;

    idp.delay_ms.store(2_000, Ordering::SeqCst);
    let refreshing = {
        let (auth, token) = (auth.clone(), token.clone());
        tokio::spawn(async move { auth.verify(&token).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    accepted(&auth, &token).await;
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "waited for the refresh"
    );
    assert!(refreshing.await.unwrap().is_ok());
    assert_eq!(idp.hits(), 2);
}

// ---------------------------------------------------------------- dev issuer

#[tokio::test]
async fn dev_issuer_tokens_verify() {
    let auth = SellerAuth::new(
        AuthConfig {
            dev_login: true,
            ..hs_config()
        },
        http_client(),
    );
    let seller = SellerId::parse("seller-7").unwrap();
    let issued = auth.dev_issuer().expect("dev login is on").mint(&seller);
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.expires_in, 3600);
    assert!(!format!("{issued:?}").contains(&issued.access_token));

    let verified = auth.verify(&issued.access_token).await.unwrap();
    assert_eq!(verified.seller_id, seller);
    assert_eq!(verified.key_id.as_deref(), Some("dev"));
    assert_eq!(verified.expires_at, issued.expires_at);
    assert_eq!(
        verified.issued_at.map(|iat| iat + 3600),
        Some(issued.expires_at)
    );
    assert!(verified.token_id.is_some());

    assert!(
        hs_auth().dev_issuer().is_none(),
        "off unless AUTH_DEV_LOGIN"
    );
}

#[tokio::test]
async fn the_launcher_can_mint_with_a_secret_from_a_key_file() {
    let file_content = format!("{}\n", AuthConfig::generate_dev_secret());
    let secret = HmacSecret::from_base64(&file_content).unwrap();
    let issuer = DevIssuer::new(
        &secret,
        "dev",
        "vitrine-dev",
        "vitrine",
        Duration::from_secs(600),
    );
    let token = issuer.mint(&SellerId::parse("seller-9").unwrap());

    let env = service_kit::Env::from_pairs([("JWT_HS256_SECRET", file_content.trim())]);
    let auth = SellerAuth::new(AuthConfig::from_env(&env).unwrap(), http_client());
    assert_eq!(
        accepted(&auth, &token.access_token).await.as_str(),
        "seller-9"
    );
    // Another secret does not verify it.
    assert_eq!(
        refusal(&hs_auth(), &token.access_token).await,
        "invalid-signature"
    );
}

// ---------------------------------------------------------------- extractor

#[derive(Clone)]
struct AppState {
    auth: SellerAuth,
}

impl FromRef<AppState> for SellerAuth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

fn app(auth: SellerAuth) -> Router {
    Router::new()
        .route(
            "/me",
            get(|Seller(id): Seller| async move { id.to_string() }),
        )
        .route(
            "/maybe",
            get(|seller: Option<Seller>| async move {
                seller.map_or_else(|| "anonymous".to_owned(), |Seller(id)| id.to_string())
            }),
        )
        .with_state(AppState { auth })
}

async fn call(app: &Router, path: &str, authorization: Option<&str>) -> Response {
    let mut request = Request::builder().uri(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body_json(response: Response) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn body_text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn extractor_accepts_a_valid_bearer_token() {
    let app = app(hs_auth());
    let token = hs_token(Some("dev"), &claims("seller-42"));
    let response = call(&app, "/me", Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "seller-42");

    let response = call(&app, "/maybe", Some(&format!("bearer {token}"))).await;
    assert_eq!(body_text(response).await, "seller-42");
    let response = call(&app, "/maybe", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "anonymous");
}

#[tokio::test]
async fn extractor_without_a_token_is_401_missing_token() {
    let app = app(hs_auth());
    for authorization in [None, Some(""), Some("Basic dXNlcjpwYXNz"), Some("Bearer")] {
        let response = call(&app, "/me", authorization).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(body_json(response).await["error"]["code"], "missing-token");
    }
}

#[tokio::test]
async fn extractor_with_a_bad_token_is_401_invalid_token() {
    let app = app(hs_auth());
    let expired = hs_token(
        Some("dev"),
        &set(claims("seller-1"), "exp", json!(now() - 120)),
    );
    for (path, token, code) in [
        ("/me", expired.as_str(), "token-expired"),
        ("/me", "not-a-jwt", "malformed-token"),
        ("/maybe", expired.as_str(), "token-expired"),
    ] {
        let response = call(&app, path, Some(&format!("Bearer {token}"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], code);
        assert!(!body.to_string().contains(token), "token echoed: {body}");
    }
}

// ---------------------------------------------------------------- metrics

#[test]
fn rejections_are_counted_by_code() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let auth = hs_auth();
            let _ = auth.verify("garbage").await;
            let _ = auth.verify("garbage").await;
            let _ = auth.authenticate(&http::HeaderMap::new()).await;
            accepted(&auth, &hs_token(None, &claims("seller-1"))).await;
        })
    });
    let rendered = handle.render();
    assert!(
        rendered.contains(r#"auth_rejections_total{code="malformed-token"} 2"#),
        "{rendered}"
    );
    assert!(
        rendered.contains(r#"auth_rejections_total{code="missing-token"} 1"#),
        "{rendered}"
    );
}

#[test]
fn auth_errors_are_api_errors() {
    let err: ApiError = AuthError::InvalidSignature.into();
    assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    assert_eq!(err.code, "invalid-signature");
}

//! Signed service-to-service calls: the client side of another service's `/internal/*` API.
//!
//! A [`SignedClient`] joins a path onto the callee's base URL, signs the request with the
//! caller's key ring (`shared-signing` request signatures), forwards the request id and
//! `traceparent` of the request being served ([`crate::telemetry::outgoing_headers`]),
//! and returns the [`Answer`]: status and buffered body, whatever the status. What a
//! status means is the caller's business; a [`CallError`] means there was no answer.
//!
//! # Retries
//! [`SignedClient::call`] (buffered, digest-signed body) is retried only when no
//! connection could be made: the request never reached the callee, so a retry cannot do
//! anything twice. Up to [`CONNECT_ATTEMPTS`] attempts, pausing [`FIRST_RETRY_DELAY`] and
//! doubling, each with a fresh signature (new nonce, current time). A timeout, a transport
//! error and every answer are returned at once. [`SignedClient::call_streamed`] is never
//! retried: its body cannot be replayed.
//!
//! # Timeouts
//! The `reqwest::Client` the caller builds sets the connect timeout and, for services
//! that only send small bodies, a whole-call timeout. A service that streams bodies sets
//! [`SignedClient::with_idle_timeout`] instead. Do not use reqwest's `read_timeout` for
//! that: in reqwest 0.12 its first deadline starts when the request is sent and is not
//! reset while the request body is being uploaded, so it caps the whole upload.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode, Uri};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shared_signing::{sign_request, unix_now, BodyDigest, KeyRing};

/// Attempts of a buffered call whose connection could not be made.
pub const CONNECT_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; doubled for each later one.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Signs and sends requests to one service. Cheap to clone.
#[derive(Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    base: Arc<url::Url>,
    keys: Arc<KeyRing>,
    idle_timeout: Option<Duration>,
}

impl fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedClient")
            .field("base", &self.base.as_str())
            .field("keys", &self.keys)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// One answer from the callee, of any status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// `(code, message)` from the standard error envelope `{"error":{"code","message"}}`,
    /// or `("(no error envelope)", "")` when the body is not one.
    pub fn error_code(&self) -> (String, String) {
        match serde_json::from_slice::<LenientEnvelope>(&self.body) {
            Ok(env) => (env.error.code, env.error.message),
            Err(_) => ("(no error envelope)".to_owned(), String::new()),
        }
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// The error envelope, with the message optional (an answer is read, not validated).
#[derive(Deserialize)]
struct LenientEnvelope {
    error: LenientBody,
}

#[derive(Deserialize)]
struct LenientBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// A call that got no answer. Every message starts with the call's name.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be built (bad path or header value): a bug, not an outage.
    #[error("{0}")]
    Invalid(String),
    /// No connection could be made (after [`CONNECT_ATTEMPTS`] attempts for buffered calls).
    #[error("{0}")]
    Connect(String),
    /// The client's timeout or [`SignedClient::with_idle_timeout`] ran out.
    #[error("{0}")]
    Timeout(String),
    /// The connection failed mid-call, the request body failed, or the answer could not
    /// be read.
    #[error("{0}")]
    Transport(String),
}

impl SignedClient {
    /// Calls to `base` (e.g. `http://storage:8082`), signed with the active key of
    /// `keys`. `http` carries the timeouts, user agent and connection pool.
    pub fn new(base: url::Url, keys: KeyRing, http: reqwest::Client) -> Self {
        SignedClient {
            http,
            base: Arc::new(base),
            keys: Arc::new(keys),
            idle_timeout: None,
        }
    }

    /// Fails a call with [`CallError::Timeout`] once nothing has moved for `idle`: no
    /// chunk of a streamed request body taken by the connection, no answer, no answer
    /// body. A buffered call's request body counts as sent at once. A steady stream of
    /// any length never times out; a stalled one, or a callee that never answers, does.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// Sends `json_body` (or no body) signed with its SHA-256, retrying only connection
    /// failures (see the module docs). `call` names the call in errors and logs.
    pub async fn call(
        &self,
        call: &'static str,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Answer, CallError> {
        let (url, signed_uri) = self.target(call, path_and_query)?;
        let digest = BodyDigest::of(json_body.as_deref().unwrap_or_default());
        let json_body = json_body.map(Bytes::from);
        let mut attempt = 1;
        loop {
            let mut request = self.request(&method, url.clone(), &signed_uri, digest);
            if let Some(body) = &json_body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            match self.bounded(request.send()).await {
                Some(Ok(response)) => return self.answer(call, response).await,
                Some(Err(e)) if e.is_connect() && attempt < CONNECT_ATTEMPTS => {
                    let delay = FIRST_RETRY_DELAY * 2u32.pow(attempt - 1);
                    tracing::debug!(call, attempt, error = %chain(&e), ?delay, "connection failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Some(Err(e)) => return Err(send_error(call, attempt, &e)),
                None => return Err(self.idle_error(call, "no answer")),
            }
        }
    }

    /// Streams `body` (exactly `content_length` bytes of `content_type`) signed with
    /// `x-vitrine-content-sha256: UNSIGNED-PAYLOAD`: the callee checks the bytes itself,
    /// e.g. against a size and digest in the signed query. Never retried.
    pub async fn call_streamed(
        &self,
        call: &'static str,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        content_length: u64,
        body: reqwest::Body,
    ) -> Result<Answer, CallError> {
        let (url, signed_uri) = self.target(call, path_and_query)?;
        let content_type = HeaderValue::from_str(content_type)
            .map_err(|e| CallError::Invalid(format!("{call}: bad content type: {e}")))?;
        let request = self
            .request(&method, url, &signed_uri, BodyDigest::Unsigned)
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, content_length);
        let sent = match self.idle_timeout {
            None => request.body(body).send().await,
            Some(idle) => {
                let progress = Progress::new();
                let body = {
                    let progress = progress.clone();
                    reqwest::Body::wrap(body.map_frame(move |frame| {
                        progress.touch();
                        frame
                    }))
                };
                tokio::select! {
                    sent = request.body(body).send() => sent,
                    () = progress.stalled(idle) => {
                        return Err(self.idle_error(call, "the upload stalled or no answer came"));
                    }
                }
            }
        };
        match sent {
            Ok(response) => self.answer(call, response).await,
            Err(e) => Err(send_error(call, 1, &e)),
        }
    }

    /// The URL to send to and the URI to sign: the path and query exactly as sent.
    fn target(&self, call: &str, path_and_query: &str) -> Result<(url::Url, Uri), CallError> {
        let url = self
            .base
            .join(path_and_query)
            .map_err(|e| CallError::Invalid(format!("{call}: bad URL: {e}")))?;
        let signed_uri: Uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
        .parse()
        .map_err(|e| CallError::Invalid(format!("{call}: bad URI: {e}")))?;
        Ok((url, signed_uri))
    }

    /// A request with the signature and trace headers; the body is the caller's.
    fn request(
        &self,
        method: &Method,
        url: url::Url,
        signed_uri: &Uri,
        digest: BodyDigest,
    ) -> reqwest::RequestBuilder {
        let signature = sign_request(&self.keys, method, signed_uri, digest, unix_now());
        let mut request = self.http.request(method.clone(), url).headers(signature);
        for (name, value) in crate::telemetry::outgoing_headers() {
            request = request.header(name, value);
        }
        request
    }

    /// Reads the whole answer body.
    async fn answer(&self, call: &str, response: reqwest::Response) -> Result<Answer, CallError> {
        let status = response.status();
        match self.bounded(response.bytes()).await {
            Some(Ok(body)) => Ok(Answer { status, body }),
            Some(Err(e)) if e.is_timeout() => Err(CallError::Timeout(format!(
                "{call}: reading the response timed out: {}",
                chain(&e)
            ))),
            Some(Err(e)) => Err(CallError::Transport(format!(
                "{call}: reading the response failed: {}",
                chain(&e)
            ))),
            None => Err(self.idle_error(call, "the answer's body stalled")),
        }
    }

    /// `future`, unless the idle timeout runs out first (`None`).
    async fn bounded<F: Future>(&self, future: F) -> Option<F::Output> {
        match self.idle_timeout {
            Some(idle) => tokio::time::timeout(idle, future).await.ok(),
            None => Some(future.await),
        }
    }

    fn idle_error(&self, call: &str, what: &str) -> CallError {
        let idle = self.idle_timeout.unwrap_or_default();
        CallError::Timeout(format!("{call}: timed out: {what} for {idle:?}"))
    }
}

fn send_error(call: &str, attempts: u32, e: &reqwest::Error) -> CallError {
    let detail = chain(e);
    if e.is_timeout() {
        CallError::Timeout(format!(
            "{call}: timed out after {attempts} attempt(s): {detail}"
        ))
    } else if e.is_connect() {
        CallError::Connect(format!(
            "{call}: cannot connect after {attempts} attempt(s): {detail}"
        ))
    } else {
        CallError::Transport(format!(
            "{call}: request failed after {attempts} attempt(s): {detail}"
        ))
    }
}

/// An error and its sources (reqwest's own message hides the cause, e.g. "connection
/// refused").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// When a streamed body last moved, as milliseconds since the call started.
#[derive(Clone)]
struct Progress {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn stalled(&self, idle: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::extract::Request;
    use axum::routing::any;
    use axum::Router;
    use shared_signing::{MemoryNonceStore, RequestVerifier};

    fn ring() -> KeyRing {
        KeyRing::parse("test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("ring")
    }

    /// What the stub saw: method, URI, signed digest, content type and length, body.
    type Seen = Arc<
        Mutex<
            Vec<(
                Method,
                String,
                BodyDigest,
                Option<String>,
                Option<String>,
                Bytes,
            )>,
        >,
    >;

    /// A server that verifies every signature, records the request and answers 200
    /// `{"ok":true}`, or 401 with an envelope when the signature is bad.
    async fn stub(delay: Duration) -> (url::Url, Seen) {
        let seen: Seen = Arc::default();
        let verifier = RequestVerifier::new(ring(), Arc::new(MemoryNonceStore::new()));
        let log = seen.clone();
        let app = Router::new().fallback(any(move |request: Request| {
            let (verifier, log) = (verifier.clone(), log.clone());
            async move {
                let (parts, body) = request.into_parts();
                let verified = verifier
                    .verify(&parts.method, &parts.uri, &parts.headers, unix_now())
                    .await;
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                tokio::time::sleep(delay).await;
                let Ok(verified) = verified else {
                    return (
                        StatusCode::UNAUTHORIZED,
                        r#"{"error":{"code":"signature-invalid","message":"no"}}"#,
                    );
                };
                let digest = verified.streamed_body_allowed();
                if let BodyDigest::Sha256(_) = digest {
                    if verified.check_body(&body).is_err() {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":{"code":"body"}}"#);
                    }
                }
                let header = |name| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v: &HeaderValue| v.to_str().ok())
                        .map(str::to_owned)
                };
                log.lock().unwrap_or_else(|e| e.into_inner()).push((
                    parts.method.clone(),
                    parts.uri.to_string(),
                    digest,
                    header(CONTENT_TYPE),
                    header(CONTENT_LENGTH),
                    body,
                ));
                (StatusCode::OK, r#"{"ok":true}"#)
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = url::Url::parse(&format!("http://{addr}")).expect("url");
        (base, seen)
    }

    fn client(base: url::Url) -> SignedClient {
        SignedClient::new(base, ring(), reqwest::Client::new())
    }

    #[tokio::test]
    async fn buffered_call_is_signed_over_path_query_and_body() {
        let (base, seen) = stub(Duration::ZERO).await;
        let answer = client(base)
            .call(
                "test",
                Method::POST,
                "/internal/x?b=a+b&a=%C3%A9",
                Some(br#"{"k":1}"#.to_vec()),
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.json::<serde_json::Value>().expect("json")["ok"],
            true
        );
        let seen = seen.lock().expect("lock");
        let (method, uri, digest, content_type, _, body) = &seen[0];
        assert_eq!(method, Method::POST);
        assert_eq!(uri, "/internal/x?b=a+b&a=%C3%A9");
        assert_eq!(*digest, BodyDigest::of(br#"{"k":1}"#));
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(&body[..], br#"{"k":1}"#);
    }

    #[tokio::test]
    async fn streamed_call_is_unsigned_payload_with_length() {
        let (base, seen) = stub(Duration::ZERO).await;
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
        let answer = client(base)
            .with_idle_timeout(Duration::from_secs(5))
            .call_streamed(
                "test",
                Method::POST,
                "/internal/s?x=1",
                "image/png",
                11,
                body,
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        let seen = seen.lock().expect("lock");
        let (_, uri, digest, content_type, length, body) = &seen[0];
        assert_eq!(uri, "/internal/s?x=1");
        assert_eq!(*digest, BodyDigest::Unsigned);
        assert_eq!(content_type.as_deref(), Some("image/png"));
        assert_eq!(length.as_deref(), Some("11"));
        assert_eq!(&body[..], b"hello world");
    }

    #[tokio::test]
    async fn an_answer_of_any_status_is_returned_with_its_code() {
        let (base, _) = stub(Duration::ZERO).await;
        let other =
            KeyRing::parse("test:BAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("ring");
        let answer = SignedClient::new(base, other, reqwest::Client::new())
            .call("test", Method::GET, "/internal/x", None)
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.error_code(),
            ("signature-invalid".to_owned(), "no".to_owned())
        );
        let plain = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"<html>"),
        };
        assert_eq!(plain.error_code().0, "(no error envelope)");
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let base = url::Url::parse(&format!("http://{addr}")).expect("url");
        let started = Instant::now();
        let err = client(base)
            .call("probe", Method::GET, "/internal/x", None)
            .await
            .expect_err("refused");
        // 100 ms + 200 ms of pauses between the three attempts.
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(err, CallError::Connect(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("probe: cannot connect after 3 attempt(s)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn idle_timeout_ends_a_call_nobody_answers() {
        let (base, _) = stub(Duration::from_secs(30)).await;
        let c = client(base).with_idle_timeout(Duration::from_millis(200));
        let err = c
            .call("slow", Method::GET, "/internal/x", None)
            .await
            .expect_err("timeout");
        assert!(matches!(err, CallError::Timeout(_)), "{err}");
        let body = reqwest::Body::from(b"abc".to_vec());
        let err = c
            .call_streamed("slow", Method::POST, "/internal/x", "image/png", 3, body)
            .await
            .expect_err("timeout");
        assert!(matches!(err, CallError::Timeout(_)), "{err}");
        assert!(err.to_string().starts_with("slow: timed out"), "{err}");
    }

    #[tokio::test]
    async fn a_slow_but_steady_stream_outlives_the_idle_timeout() {
        let (base, seen) = stub(Duration::ZERO).await;
        // Ten chunks 50 ms apart: 500 ms in all, never idle for the 200 ms limit.
        let chunks = futures::stream::unfold(0u8, |i| async move {
            if i == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(vec![i; 10])), i + 1))
        });
        let answer = client(base)
            .with_idle_timeout(Duration::from_millis(200))
            .call_streamed(
                "steady",
                Method::POST,
                "/internal/s",
                "image/png",
                100,
                reqwest::Body::wrap_stream(chunks),
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(seen.lock().expect("lock")[0].5.len(), 100);
    }

    #[tokio::test]
    async fn a_bad_content_type_is_invalid_not_an_outage() {
        let c = client(url::Url::parse("http://127.0.0.1:9").expect("url"));
        let err = c
            .call_streamed(
                "x",
                Method::POST,
                "/p",
                "bad\nvalue",
                1,
                reqwest::Body::from("a"),
            )
            .await
            .expect_err("invalid");
        assert!(matches!(err, CallError::Invalid(_)), "{err}");
    }
}

//! The service on a real socket: a client that disconnects mid-upload leaves nothing
//! behind, a real HTTP client uploads, and an unreachable object store is a clean 503.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, fixture, json_of, Backend, TestApp};
use http::StatusCode;
use storage_service::inspect::synthetic;
use tokio::io::AsyncWriteExt;

async fn serve(app: &TestApp) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = storage_service::router(app.state.clone());
    tokio::spawn(service_kit::http::serve(
        listener,
        router,
        std::future::pending(),
    ));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_upload_leaves_nothing() {
    let app = TestApp::start(
        Backend::Embedded,
        "client_disconnect_mid_upload_leaves_nothing",
    )
    .await
    .unwrap();
    let addr = serve(&app).await;
    let bytes = synthetic::png(256, 256, 2 * 1024 * 1024);
    let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;

    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    socket.flush().await.unwrap();
    // Wait until the service holds the claim and has written part of the body.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.pending_state(&id).await != "receiving" {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(socket);

    // The claim comes back, and no row, object or temp file remains.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if app.pending_state(&id).await == "pending" && app.stored_files().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after a disconnect: {:?}",
            app.stored_files()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.assert_nothing_stored().await;

    // The same URL still works with a real HTTP client.
    let response = reqwest::Client::new()
        .put(format!("http://{addr}{path}"))
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["size"], bytes.len());
    assert_eq!(app.image_count().await, 1);
}

#[tokio::test]
async fn object_store_down_is_a_clean_503() {
    let app = TestApp::start_with(
        Backend::Embedded,
        "object_store_down_is_a_clean_503",
        &[
            ("BLOB_STORE", "s3://unreachable-bucket"),
            ("S3_ENDPOINT", "http://127.0.0.1:9"),
            ("S3_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ],
    )
    .await
    .unwrap();
    let bytes = fixture("tiny.png");
    let (id, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
    let started = Instant::now();
    let response = app.put(&path, "image/png", bytes).await;
    assert!(response.headers().contains_key("retry-after"));
    let json = assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "blob-store-unavailable",
    )
    .await;
    assert!(
        !json.to_string().contains("127.0.0.1"),
        "internal detail leaked: {json}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(app.image_count().await, 0);
    assert_eq!(app.pending_state(&id).await, "pending");
    let (status, _) = json_of(
        app.send(
            http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A PUT refused before its body is read (here: a used URL) is answered at once, says
/// `Connection: close` and closes, so a client still sending a large body can stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_and_closed_without_reading_the_body() {
    let app = TestApp::start(
        Backend::Embedded,
        "a_refused_upload_is_answered_and_closed_without_reading_the_body",
    )
    .await
    .unwrap();
    let addr = serve(&app).await;
    let bytes = fixture("tiny.png");
    let (_, path) = app.presign("seller-1", "a.png", "image/png", &bytes).await;
    let first = app.put(&path, "image/png", bytes.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    // The same URL again, announcing the declared size but sending no body byte.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // Reading to the end only returns once the service closes the connection.
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut answer),
    )
    .await
    .expect("the connection was left open")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 409"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("upload-already-completed"), "{answer}");
}

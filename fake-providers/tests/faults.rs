//! Every fault, as a client sees it; deterministic schedules; statistics; the
//! admin routes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use fake_providers::{
    FakeProviders, Fault, FaultConfig, Folder, Generate, RateLimitReason, Route, RouteMatch, Rule,
    RunningFake,
};
use serde_json::{json, Value};

/// One generated folder shared over both providers.
async fn start(images: usize) -> RunningFake {
    FakeProviders::builder()
        .drive_folder(Folder::generated(
            Generate::images(images).size(20_000).seed(5),
        ))
        .dropbox_folder(Folder::generated(
            Generate::images(images).size(20_000).seed(5),
        ))
        .build()
        .unwrap()
        .serve_on_loopback()
        .await
        .unwrap()
}

fn first_drive_file(fake: &RunningFake) -> String {
    let root = fake.drive_folders()[0].root;
    fake.nodes()
        .iter()
        .find(|n| n.parent == Some(root) && n.content().is_some())
        .unwrap()
        .drive_id
        .clone()
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let fake = start(1).await;
    fake.faults().set(FaultConfig::default().latency(150));
    let client = client();
    let id = first_drive_file(&fake);
    let started = Instant::now();
    let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Admin routes are never delayed.
    let started = Instant::now();
    client
        .get(format!("{}/_fake/stats", fake.base_url))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn drive_rate_limits_403_and_429() {
    let fake = start(1).await;
    let client = client();
    let id = first_drive_file(&fake);
    let cases = [
        (
            403,
            RateLimitReason::RateLimitExceeded,
            None,
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        ),
        (
            403,
            RateLimitReason::UserRateLimitExceeded,
            None,
            "userRateLimitExceeded",
            "User Rate Limit Exceeded",
        ),
        (
            429,
            RateLimitReason::RateLimitExceeded,
            Some(7),
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        ),
    ];
    for (status, reason, retry_after, wire_reason, message) in cases {
        fake.faults().set(FaultConfig::default().rule(Rule::new(
            RouteMatch::Download,
            Fault::RateLimited {
                status,
                reason,
                retry_after,
            },
        )));
        let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after.map(|s| s.to_string())
        );
        let body: Value = response.json().await.unwrap();
        let status_text = if status == 403 {
            "PERMISSION_DENIED"
        } else {
            "RESOURCE_EXHAUSTED"
        };
        assert_eq!(
            body,
            json!({"error": {"code": status, "message": message, "errors": [{
                "message": message, "domain": "usageLimits", "reason": wire_reason}],
                "status": status_text}})
        );
    }
}

#[tokio::test]
async fn dropbox_429_with_and_without_retry_after() {
    let fake = start(1).await;
    let client = client();
    let url = fake.dropbox_links()[0].url.clone();
    let list = json!({"path": "", "shared_link": {"url": url}});

    fake.faults().add(
        Rule::new(
            RouteMatch::DropboxList,
            Fault::RateLimited {
                status: 429,
                reason: RateLimitReason::RateLimitExceeded,
                retry_after: Some(3),
            },
        )
        .first(1),
    );
    let response = dropbox_rpc(&client, &fake.base_url, "files/list_folder", list.clone()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error_summary": "too_many_requests/..", "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 3}})
    );
    // Asking what the link is counts as listing its root: the same rules apply.
    fake.faults()
        .add(Rule::new(RouteMatch::DropboxList, Fault::ServerError { status: 503 }).first(1));
    let metadata = json!({"url": url});
    let path = "sharing/get_shared_link_metadata";
    let response = dropbox_rpc(&client, &fake.base_url, path, metadata.clone()).await;
    assert_eq!(response.status(), 503);
    let response = dropbox_rpc(&client, &fake.base_url, path, metadata).await;
    assert_eq!(response.status(), 200);

    fake.faults().set(FaultConfig::default().rule(Rule::new(
        RouteMatch::Dropbox,
        Fault::RateLimited {
            status: 429,
            reason: RateLimitReason::RateLimitExceeded,
            retry_after: None,
        },
    )));
    let response = dropbox_download(&client, &fake.base_url, &url, "/IMG_00000.png")
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"][".tag"], "too_many_requests");
    assert!(body["error"].get("retry_after").is_none());
}

#[tokio::test]
async fn html_429_and_server_errors() {
    let fake = start(1).await;
    let client = client();
    let id = first_drive_file(&fake);
    let url = fake.dropbox_links()[0].url.clone();

    fake.faults().set(FaultConfig::default().rule(Rule::new(
        RouteMatch::Any,
        Fault::Html429 {
            retry_after: Some(1),
        },
    )));
    let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("<html"));
    let response = dropbox_download(&client, &fake.base_url, &url, "/IMG_00000.png")
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    for (status, reason) in [(500, "internalError"), (503, "backendError")] {
        fake.faults().set(
            FaultConfig::default().rule(Rule::new(RouteMatch::Any, Fault::ServerError { status })),
        );
        let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], status);
        assert_eq!(body["error"]["errors"][0]["reason"], reason);
        let response = dropbox_download(&client, &fake.base_url, &url, "/IMG_00000.png")
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
    }
    fake.faults().set(FaultConfig::default().rule(Rule::new(
        RouteMatch::Any,
        Fault::ServerError { status: 502 },
    )));
    let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert_eq!(response.status(), 502);
}

/// Whether an I/O error "connection reset by peer" (an RST) is in the chain.
fn is_connection_reset(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        source = e.source();
    }
    false
}

#[tokio::test]
async fn connection_reset_is_a_client_side_connection_error() {
    let fake = start(1).await;
    let client = client();
    let id = first_drive_file(&fake);
    let url = fake.dropbox_links()[0].url.clone();
    fake.faults().set(
        FaultConfig::default()
            .rule(Rule::new(RouteMatch::DriveDownload, Fault::ConnectionReset).first(2))
            .rule(Rule::new(RouteMatch::DropboxList, Fault::ConnectionReset).first(1)),
    );

    for _ in 0..2 {
        let err = drive_download(&client, &fake.base_url, &id)
            .await
            .unwrap_err();
        assert!(err.status().is_none());
        assert!(is_connection_reset(&err), "{err:?}");
    }
    // The third attempt gets through, on a fresh connection.
    let ok = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(!ok.bytes().await.unwrap().is_empty());

    let err = client
        .post(format!("{}/2/files/list_folder", fake.base_url))
        .bearer_auth(TOKEN)
        .json(&json!({"path": "", "shared_link": {"url": url}}))
        .send()
        .await
        .unwrap_err();
    assert!(is_connection_reset(&err), "{err:?}");

    let stats = fake.stats();
    assert_eq!(stats.fault("connection_reset"), 3);
    assert_eq!(
        stats.route(Route::DriveDownload),
        3,
        "no hidden client retry"
    );
    assert_eq!(stats.completed_downloads.get(&id).copied(), Some(1));
}

#[tokio::test]
async fn truncated_bodies_are_errors_for_the_client() {
    let fake = start(1).await;
    let client = client();
    let id = first_drive_file(&fake);
    let url = fake.dropbox_links()[0].url.clone();
    fake.faults().set(FaultConfig::default().rule(Rule::new(
        RouteMatch::Any,
        Fault::TruncatedBody { after_bytes: 1000 },
    )));

    let mut response = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(20_000));
    // Exactly the first 1000 bytes arrive, then the body fails.
    let mut received = 0;
    let failure = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("the body ended normally after {received} bytes"),
            Err(e) => break e,
        }
    };
    assert_eq!(received, 1000);
    assert!(failure.is_body() || failure.is_decode(), "{failure:?}");
    let response = drive_download(&client, &fake.base_url, &id).await.unwrap();
    assert!(response.bytes().await.is_err());

    let response = dropbox_download(&client, &fake.base_url, &url, "/IMG_00000.png")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("dropbox-api-result"));
    assert!(response.bytes().await.is_err());

    // A listing cut short: the JSON never completes.
    let q = format!("'{}' in parents", fake.drive_folders()[0].id);
    fake.faults().set(FaultConfig::default().rule(Rule::new(
        RouteMatch::Listing,
        Fault::TruncatedBody { after_bytes: 10 },
    )));
    let response = client
        .get(format!("{}/drive/v3/files", fake.base_url))
        .query(&[("q", q.as_str()), ("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.content_length().unwrap() > 10);
    assert!(response.bytes().await.is_err());
    assert_eq!(fake.stats().completed_downloads.len(), 0);
}

#[tokio::test]
async fn download_quota_for_chosen_files_only() {
    let fake = start(2).await;
    let client = client();
    let root = fake.drive_folders()[0].root;
    let files: Vec<String> = fake
        .nodes()
        .iter()
        .filter(|n| n.parent == Some(root))
        .map(|n| n.drive_id.clone())
        .collect();
    fake.faults()
        .add(Rule::new(RouteMatch::Any, Fault::DownloadQuotaExceeded).file(files[0].clone()));

    let response = drive_download(&client, &fake.base_url, &files[0])
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "downloadQuotaExceeded"
    );
    assert_eq!(
        body["error"]["message"],
        "The download quota for this file has been exceeded."
    );
    // Metadata of that file, and the other file's bytes, are fine.
    let meta = client
        .get(format!("{}/drive/v3/files/{}", fake.base_url, files[0]))
        .query(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(meta.status(), 200);
    assert_eq!(
        drive_download(&client, &fake.base_url, &files[1])
            .await
            .unwrap()
            .status(),
        200
    );

    // By Dropbox path.
    let url = fake.dropbox_links()[0].url.clone();
    fake.faults().set(FaultConfig::default().rule(
        Rule::new(RouteMatch::DropboxDownload, Fault::DownloadQuotaExceeded).file("/IMG_00001.jpg"),
    ));
    let response = dropbox_download(&client, &fake.base_url, &url, "/IMG_00001.jpg")
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"][".tag"], "shared_link_access_denied");
    assert_eq!(
        dropbox_download(&client, &fake.base_url, &url, "/IMG_00000.png")
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn private_folder_and_empty_listing_faults() {
    let fake = start(3).await;
    let client = client();
    let folder = fake.drive_folders()[0].id.clone();
    let url = fake.dropbox_links()[0].url.clone();
    let list = json!({"path": "", "shared_link": {"url": url}});

    fake.faults()
        .set(FaultConfig::default().rule(Rule::new(RouteMatch::Listing, Fault::PrivateFolder)));
    let response = drive_list(&client, &fake.base_url, &folder, &[]).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        format!("File not found: {folder}.")
    );
    let response = dropbox_rpc(&client, &fake.base_url, "files/list_folder", list.clone()).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"][".tag"],
        "shared_link_not_found"
    );

    fake.faults()
        .set(FaultConfig::default().rule(Rule::new(RouteMatch::Listing, Fault::EmptyListing)));
    let page: Value = drive_list(&client, &fake.base_url, &folder, &[("pageSize", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["files"], json!([]));
    assert!(page.get("nextPageToken").is_none());
    let page: Value = dropbox_rpc(&client, &fake.base_url, "files/list_folder", list)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"], json!([]));
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn schedules_are_deterministic() {
    let fake = start(1).await;
    let client = client();
    let id = first_drive_file(&fake);
    let statuses = |n: usize| {
        let client = client.clone();
        let base = fake.base_url.clone();
        let id = id.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(
                    drive_download(&client, &base, &id)
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                );
            }
            out
        }
    };

    fake.faults().set(
        FaultConfig::default()
            .rule(Rule::new(RouteMatch::Download, Fault::ServerError { status: 503 }).first(3)),
    );
    assert_eq!(statuses(5).await, [503, 503, 503, 200, 200]);

    fake.faults().set(
        FaultConfig::default()
            .rule(Rule::new(RouteMatch::Download, Fault::ServerError { status: 500 }).every(3)),
    );
    assert_eq!(statuses(7).await, [200, 200, 500, 200, 200, 500, 200]);

    let random = Rule::new(RouteMatch::Download, Fault::NotFound).random(0.5, 99);
    fake.faults()
        .set(FaultConfig::default().rule(random.clone()));
    let a = statuses(30).await;
    fake.faults().set(FaultConfig::default().rule(random));
    let b = statuses(30).await;
    assert_eq!(a, b);
    assert!(a.contains(&404) && a.contains(&200));

    // Requests about other files or routes do not advance a file's counter.
    fake.faults().set(
        FaultConfig::default().rule(
            Rule::new(RouteMatch::Download, Fault::ServerError { status: 503 })
                .file(id.clone())
                .first(1),
        ),
    );
    let listing = drive_list(&client, &fake.base_url, &fake.drive_folders()[0].id, &[]).await;
    assert_eq!(listing.status(), 200);
    assert_eq!(statuses(2).await, [503, 200]);
}

#[tokio::test]
async fn stats_and_admin_routes_over_http() {
    let fake = start(2).await;
    let client = client();
    let base = fake.base_url.clone();
    let id = first_drive_file(&fake);

    let config = json!({"latency_ms": 0, "rules": [
        {"route": "download", "schedule": {"first": 1}, "fault": {"kind": "rate_limited", "status": 403, "reason": "user_rate_limit_exceeded"}}
    ]});
    let response = client
        .post(format!("{base}/_fake/faults"))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["rules"][0]["schedule"], json!({"first": 1}));
    assert_eq!(
        drive_download(&client, &base, &id).await.unwrap().status(),
        403
    );
    assert_eq!(
        drive_download(&client, &base, &id).await.unwrap().status(),
        200
    );
    drive_list(&client, &base, &fake.drive_folders()[0].id, &[]).await;

    let stats: Value = client
        .get(format!("{base}/_fake/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 3);
    assert_eq!(
        stats["routes"],
        json!({"drive_download": 2, "drive_list": 1})
    );
    assert_eq!(stats["downloads"][&id], 2);
    assert_eq!(stats["faults"], json!({"rate_limited": 1}));
    assert_eq!(stats["listings"][&fake.drive_folders()[0].id], 1);

    let rule = json!({"route": "drive_get", "fault": {"kind": "not_found"}});
    let response = client
        .post(format!("{base}/_fake/faults/rules"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client
        .post(format!("{base}/_fake/faults"))
        .json(&json!({"rules": [{"fault": {"kind": "bogus"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    let folders: Value = client
        .get(format!("{base}/_fake/folders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        folders["google_drive"][0]["id"],
        json!(fake.drive_folders()[0].id)
    );
    assert_eq!(
        folders["dropbox"][0]["url"],
        json!(fake.dropbox_links()[0].url)
    );

    let response = client
        .post(format!("{base}/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(fake.stats().total, 0);
    assert!(fake.faults().config().rules.is_empty());
}

/// What the importer must achieve: with faults on every route, a client that
/// retries transient failures still gets every image exactly once, intact.
#[tokio::test]
async fn a_retrying_client_gets_every_image_exactly_once() {
    let fake = start(40).await;
    fake.faults().set(
        FaultConfig::default()
            .rule(Rule::new(RouteMatch::Listing, Fault::ServerError { status: 503 }).every(2))
            .rule(Rule::new(RouteMatch::Download, Fault::ConnectionReset).every(7))
            .rule(
                Rule::new(
                    RouteMatch::Download,
                    Fault::TruncatedBody { after_bytes: 500 },
                )
                .every(5),
            )
            .rule(
                Rule::new(
                    RouteMatch::Download,
                    Fault::RateLimited {
                        status: 403,
                        reason: RateLimitReason::UserRateLimitExceeded,
                        retry_after: None,
                    },
                )
                .random(0.2, 3),
            ),
    );
    let client = client();
    let base = fake.base_url.clone();
    let folder = fake.drive_folders()[0].id.clone();
    let q = format!("'{folder}' in parents and trashed=false");

    let mut files = Vec::new();
    let mut token = String::new();
    loop {
        let mut query = vec![
            ("q", q.as_str()),
            ("key", KEY),
            ("pageSize", "15"),
            ("fields", "nextPageToken,files(id,sha256Checksum)"),
        ];
        if !token.is_empty() {
            query.push(("pageToken", token.as_str()));
        }
        let response = client
            .get(format!("{base}/drive/v3/files"))
            .query(&query)
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            continue;
        }
        let page: Value = response.json().await.unwrap();
        files.extend(page["files"].as_array().unwrap().iter().cloned());
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(files.len(), 40);

    let mut got = BTreeMap::new();
    for f in &files {
        let id = f["id"].as_str().unwrap();
        loop {
            let Ok(response) = drive_download(&client, &base, id).await else {
                continue;
            };
            if response.status() != 200 {
                continue;
            }
            let Ok(bytes) = response.bytes().await else {
                continue;
            };
            assert_eq!(sha256_hex(&bytes), f["sha256Checksum"].as_str().unwrap());
            got.insert(id.to_owned(), bytes.len());
            break;
        }
    }
    assert_eq!(got.len(), 40);
    let stats = fake.stats();
    assert!(stats.fault("connection_reset") > 0 && stats.fault("truncated_body") > 0);
    assert!(
        stats.completed_downloads.values().all(|&n| n == 1),
        "{stats:?}"
    );
    assert_eq!(stats.completed_downloads.len(), 40);
}

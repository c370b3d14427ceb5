//! Token mint/verify with a ~200-byte payload; request sign/verify.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Uri};
use shared_signing::{
    sign_request, BodyDigest, KeyId, KeyRing, MemoryNonceStore, NonceStore, NonceStoreError,
    Purpose, RequestVerifier, TokenPolicy,
};

const NOW: i64 = 1_700_000_000;

fn ring() -> KeyRing {
    match KeyId::new("bench") {
        Ok(kid) => KeyRing::generate(kid),
        Err(e) => panic!("{e}"),
    }
}

/// Accepts every nonce, so verification cost excludes the store.
struct NoStore;

#[async_trait]
impl NonceStore for NoStore {
    async fn remember(&self, _: &str, _: &str, _: i64) -> Result<bool, NonceStoreError> {
        Ok(true)
    }
}

fn tokens(c: &mut Criterion) {
    let ring = ring();
    let policy = TokenPolicy::default();
    let payload = vec![b'x'; 200];
    let token = ring
        .mint(Purpose::UPLOAD_URL, &payload, NOW, NOW + 900)
        .expect("mint");

    c.bench_function("token/mint_200B", |b| {
        b.iter(|| {
            ring.mint(
                Purpose::UPLOAD_URL,
                black_box(&payload),
                black_box(NOW),
                NOW + 900,
            )
        })
    });
    c.bench_function("token/verify_200B", |b| {
        b.iter(|| {
            let verified = ring.verify(
                Purpose::UPLOAD_URL,
                black_box(&token),
                black_box(NOW),
                &policy,
            );
            assert!(verified.is_ok());
            verified
        })
    });
}

fn requests(c: &mut Criterion) {
    let ring = ring();
    let method = Method::POST;
    let uri: Uri = "/internal/images/0190f0c4-5b7a-7cc1-8d47-4fd0a3b7c111?expand=owner&size=large"
        .parse()
        .expect("uri");
    let body = BodyDigest::of(&[b'{'; 512]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    c.bench_function("request/sign", |b| {
        b.iter(|| sign_request(&ring, &method, black_box(&uri), body, black_box(NOW)))
    });

    let headers = sign_request(&ring, &method, &uri, body, NOW);
    let verifier = RequestVerifier::new(ring.clone(), Arc::new(NoStore));
    c.bench_function("request/verify_no_store", |b| {
        b.iter(|| rt.block_on(verifier.verify(&method, black_box(&uri), &headers, black_box(NOW))))
    });

    // The clock advances one second every 100 requests so the store prunes and
    // stays well under its cap (all-same timestamps would fill it).
    let verifier = RequestVerifier::new(ring.clone(), Arc::new(MemoryNonceStore::new()));
    let mut i: i64 = 0;
    c.bench_function("request/sign_then_verify_memory_store", |b| {
        b.iter(|| {
            i += 1;
            let now = NOW + i / 100;
            let headers = sign_request(&ring, &method, &uri, body, now);
            let verified = rt.block_on(verifier.verify(&method, black_box(&uri), &headers, now));
            assert!(verified.is_ok());
            verified
        })
    });
}

criterion_group!(benches, tokens, requests);
criterion_main!(benches);

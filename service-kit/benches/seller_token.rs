//! Verifying a seller's JWT (HS256, as the dev issuer mints them), which every
//! authenticated request pays for: the header read by hand, the key chosen, then
//! `jsonwebtoken`'s signature and claim checks and the claims read into
//! `SellerClaims`. Figures in `docs/benchmarks.md`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use service_kit::auth::{AuthConfig, DevIssuer, HmacSecret, SellerAuth, SellerId};

fn verify(c: &mut Criterion) {
    let config =
        AuthConfig::new("vitrine-dev", "vitrine").with_hs256_secret(HmacSecret::generate());
    let Some(issuer) = DevIssuer::from_config(&config) else {
        panic!("an HS256 secret is configured, so there is a dev issuer");
    };
    let Ok(seller) = SellerId::parse("bench-seller") else {
        panic!("a valid seller id");
    };
    let token = issuer.mint(&seller).access_token;
    let auth = SellerAuth::new(config, reqwest::Client::new());
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => panic!("{e}"),
    };
    c.bench_function("verify a seller token (HS256)", |b| {
        b.to_async(&runtime).iter(|| async {
            match auth.verify(black_box(&token)).await {
                Ok(claims) => claims,
                Err(e) => panic!("the token verifies: {e}"),
            }
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);

//! Property tests: no single change to a token or a signed request verifies.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Uri};
use proptest::prelude::*;
use shared_signing::request::{
    CONTENT_SHA256_HEADER, KEY_ID_HEADER, NONCE_HEADER, TIMESTAMP_HEADER,
};
use shared_signing::{
    sign_request, BodyDigest, KeyRing, MemoryNonceStore, Purpose, RequestAuthError,
    RequestVerifier, TokenPolicy,
};

const NOW: i64 = 1_700_000_000;
const PURPOSES: [Purpose; 4] = [
    Purpose::UPLOAD_METADATA,
    Purpose::UPLOAD_URL,
    Purpose::DOWNLOAD_URL,
    Purpose::new("test-purpose"),
];

fn rings() -> (KeyRing, KeyRing) {
    // `k1` signs; `k2` is a second valid key in the same ring.
    let k1 = KeyRing::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("k1");
    let k2 = KeyRing::parse("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").expect("k2");
    let both =
        KeyRing::parse(&format!("{},{}", k1.to_env_value(), k2.to_env_value())).expect("ring");
    (k1, both)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_single_byte_change_of_a_token_fails(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        purpose in 0..PURPOSES.len(),
        ttl in 1i64..3600,
        position in any::<prop::sample::Index>(),
        replacement in 0x20u8..0x7f,
    ) {
        let (_, ring) = rings();
        let purpose = PURPOSES[purpose];
        let policy = TokenPolicy::default();
        let token = ring.mint(purpose, &payload, NOW, NOW + ttl).expect("mint");
        prop_assert!(ring.verify(purpose, &token, NOW, &policy).is_ok());

        let i = position.index(token.len());
        let mut bytes = token.clone().into_bytes();
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let tampered = String::from_utf8(bytes).expect("ascii");
        prop_assert!(ring.verify(purpose, &tampered, NOW, &policy).is_err(), "{}", tampered);
    }

    #[test]
    fn changing_payload_signature_key_id_or_purpose_fails(
        payload in proptest::collection::vec(any::<u8>(), 1..300),
        purpose in 0..PURPOSES.len(),
        other_purpose in 0..PURPOSES.len(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
        mac_byte in 0usize..32,
    ) {
        let (_, ring) = rings();
        let policy = TokenPolicy::default();
        let p = PURPOSES[purpose];
        let token = ring.mint(p, &payload, NOW, NOW + 600).expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        prop_assert_eq!(parts.len(), 6);
        let join = |kid: &str, payload: &str, mac: &str| {
            format!("{}.{kid}.{}.{}.{payload}.{mac}", parts[0], parts[2], parts[3])
        };

        // payload: one bit of one byte
        let mut changed = payload.clone();
        changed[byte.index(payload.len())] ^= 1 << bit;
        let t = join(parts[1], &URL_SAFE_NO_PAD.encode(&changed), parts[5]);
        prop_assert!(ring.verify(p, &t, NOW, &policy).is_err());

        // signature: one bit of one byte
        let mut mac = URL_SAFE_NO_PAD.decode(parts[5]).expect("mac");
        mac[mac_byte] ^= 1 << bit;
        let t = join(parts[1], parts[4], &URL_SAFE_NO_PAD.encode(&mac));
        prop_assert!(ring.verify(p, &t, NOW, &policy).is_err());

        // key id: another key of the same ring, and an unknown one
        for kid in ["k2", "k3"] {
            let t = join(kid, parts[4], parts[5]);
            prop_assert!(ring.verify(p, &t, NOW, &policy).is_err());
        }

        // purpose
        let q = PURPOSES[other_purpose];
        prop_assert_eq!(ring.verify(q, &token, NOW, &policy).is_ok(), p == q);
    }
}

#[derive(Debug, Clone)]
enum Tamper {
    Method(usize),
    PathAppend(String),
    PathCharChange(prop::sample::Index, char),
    QueryValue(prop::sample::Index),
    QueryKey(prop::sample::Index),
    QueryDrop(prop::sample::Index),
    QueryAdd(String, String),
    Timestamp(i64),
    Nonce(prop::sample::Index, char),
    KeyId(&'static str),
    BodyDigestHeader,
    BodyDigestUnsigned,
}

fn tamper_strategy() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0usize..METHODS.len()).prop_map(Tamper::Method),
        "[a-z0-9]{1,4}".prop_map(Tamper::PathAppend),
        (any::<prop::sample::Index>(), prop::char::range('a', 'z'))
            .prop_map(|(i, c)| Tamper::PathCharChange(i, c)),
        any::<prop::sample::Index>().prop_map(Tamper::QueryValue),
        any::<prop::sample::Index>().prop_map(Tamper::QueryKey),
        any::<prop::sample::Index>().prop_map(Tamper::QueryDrop),
        ("[a-z]{1,5}", "[a-zA-Z0-9 ]{0,6}").prop_map(|(k, v)| Tamper::QueryAdd(k, v)),
        prop_oneof![-200i64..0, 1i64..200].prop_map(Tamper::Timestamp),
        (any::<prop::sample::Index>(), prop::char::range('A', 'Z'))
            .prop_map(|(i, c)| Tamper::Nonce(i, c)),
        prop_oneof![Just("k2"), Just("k3")].prop_map(Tamper::KeyId),
        Just(Tamper::BodyDigestHeader),
        Just(Tamper::BodyDigestUnsigned),
    ]
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

fn encode_component(s: &str, plus_for_space: bool) -> String {
    s.chars()
        .map(|c| match c {
            ' ' if plus_for_space => "+".to_string(),
            ' ' => "%20".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn build_uri(path: &str, query: &[(String, String)], plus_for_space: bool) -> Uri {
    let mut s = path.to_string();
    if !query.is_empty() {
        s.push('?');
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v, plus_for_space)))
            .collect();
        s.push_str(&pairs.join("&"));
    }
    s.parse().expect("uri")
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).expect("header"));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_change_to_a_signed_request_fails(
        method in 0usize..METHODS.len(),
        path in "(/[a-z0-9]{1,8}){1,3}",
        query in proptest::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9 ]{0,6}"), 0..5),
        plus_for_space in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        tamper in tamper_strategy(),
    ) {
        let (signer, ring) = rings();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let verifier = || RequestVerifier::new(ring.clone(), Arc::new(MemoryNonceStore::new()));

        let m = METHODS[method].clone();
        let uri = build_uri(&path, &query, plus_for_space);
        let digest = BodyDigest::of(&body);
        let headers = sign_request(&signer, &m, &uri, digest, NOW);

        let (mut tm, mut tpath, mut tquery, mut th) =
            (m.clone(), path.clone(), query.clone(), headers.clone());
        match &tamper {
            Tamper::Method(i) => {
                prop_assume!(METHODS[*i] != m);
                tm = METHODS[*i].clone();
            }
            Tamper::PathAppend(seg) => tpath = format!("{tpath}/{seg}"),
            Tamper::PathCharChange(i, c) => {
                let i = i.index(tpath.len());
                prop_assume!(tpath.as_bytes()[i] != b'/' && tpath.as_bytes()[i] != *c as u8);
                tpath.replace_range(i..=i, &c.to_string());
            }
            Tamper::QueryValue(i) => {
                prop_assume!(!tquery.is_empty());
                let i = i.index(tquery.len());
                tquery[i].1.push('z');
            }
            Tamper::QueryKey(i) => {
                prop_assume!(!tquery.is_empty());
                let i = i.index(tquery.len());
                tquery[i].0.push('q');
            }
            Tamper::QueryDrop(i) => {
                prop_assume!(!tquery.is_empty());
                let i = i.index(tquery.len());
                tquery.remove(i);
            }
            Tamper::QueryAdd(k, v) => tquery.push((k.clone(), v.clone())),
            Tamper::Timestamp(delta) => set(&mut th, TIMESTAMP_HEADER, &(NOW + delta).to_string()),
            Tamper::Nonce(i, c) => {
                let nonce = th[NONCE_HEADER].to_str().expect("ascii").to_string();
                let i = i.index(nonce.len());
                prop_assume!(nonce.as_bytes()[i] != *c as u8);
                let mut n = nonce.into_bytes();
                n[i] = *c as u8;
                set(&mut th, NONCE_HEADER, &String::from_utf8(n).expect("ascii"));
            }
            Tamper::KeyId(kid) => set(&mut th, KEY_ID_HEADER, kid),
            Tamper::BodyDigestHeader => {
                let mut other = body.clone();
                other.push(0);
                set(&mut th, CONTENT_SHA256_HEADER, &BodyDigest::of(&other).to_header_value());
            }
            Tamper::BodyDigestUnsigned => {
                set(&mut th, CONTENT_SHA256_HEADER, &BodyDigest::Unsigned.to_header_value());
            }
        }
        let turi = build_uri(&tpath, &tquery, plus_for_space);

        let result = rt.block_on(verifier().verify(&tm, &turi, &th, NOW));
        match result {
            Ok(_) => prop_assert!(false, "tampered request verified: {:?}", tamper),
            Err(e) => prop_assert!(
                !matches!(e, RequestAuthError::Replayed | RequestAuthError::NonceStoreUnavailable(_)),
                "{e}"
            ),
        }
        // control: the untouched request verifies, and its body checks out
        let verified = rt.block_on(verifier().verify(&m, &uri, &headers, NOW));
        prop_assert!(verified.is_ok());
        let verified = verified.expect("ok");
        prop_assert!(verified.check_body(&body).is_ok());
        let mut other = body.clone();
        other.push(1);
        prop_assert!(verified.check_body(&other).is_err());
    }

    /// Re-spelling the query without changing its meaning keeps the signature.
    #[test]
    fn query_order_and_space_spelling_do_not_matter(
        query in proptest::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9 ]{0,6}"), 0..5),
    ) {
        let (signer, ring) = rings();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let verifier = RequestVerifier::new(ring, Arc::new(MemoryNonceStore::new()));
        let uri = build_uri("/internal/x", &query, true);
        let headers = sign_request(&signer, &Method::GET, &uri, BodyDigest::Unsigned, NOW);
        let mut reordered = query.clone();
        reordered.reverse();
        let respelled = build_uri("/internal/x", &reordered, false);
        prop_assert!(rt.block_on(verifier.verify(&Method::GET, &respelled, &headers, NOW)).is_ok());
    }
}

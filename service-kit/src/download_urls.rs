//! Storage's signed download URLs as the app and import services hand them out:
//! [`DownloadUrl`] (one URL, as storage's `POST /internal/download-urls` answers it) and
//! [`ReusedUrls`], which asks storage for an image's URL once and hands the same URL out
//! again while at least half its lifetime is left.
//!
//! Why reuse: storage serves an image's bytes with `Cache-Control: private, max-age=…,
//! immutable`, and a browser keys that cache by URL. A new URL on every `GET /images` or
//! `GET /products` page defeated it (every gallery reload fetched every thumbnail again),
//! and every page cost a signed call to storage (its signature check, nonce write and
//! audit event). With reuse, a page read again soon is answered from the service's own
//! database, and the browser's copies stay valid. The half-lifetime rule means a URL
//! handed out always has at least half its lifetime to run.
//!
//! A URL is looked up by image id only after the caller's own query has found the image
//! among the seller's; an image id belongs to one seller, so a URL is only ever handed to
//! the image's owner. Each process keeps its own URLs, at most the capacity it is given.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;
use serde::Deserialize;

/// One signed download URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DownloadUrl {
    pub image_id: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// URLs a service keeps by default: 200 gallery pages of 50, about 4 MiB.
pub const CAPACITY: usize = 10_000;

/// Download URLs by image id, reused while fresh.
pub struct ReusedUrls {
    cache: Cache<String, Kept>,
}

#[derive(Clone)]
struct Kept {
    url: String,
    /// Half way from when it was received to when it expires.
    fresh_until: DateTime<Utc>,
}

impl Default for ReusedUrls {
    /// Keeps at most [`CAPACITY`] URLs.
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl ReusedUrls {
    /// Keeps at most `capacity` URLs (about 400 bytes each).
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// The URL of each of `image_ids` that has one, by id. The ids with no fresh URL at
    /// hand are passed to `sign` (storage's `POST /internal/download-urls`), in one call,
    /// and what it returns is kept; ids it leaves out (no complete image) get no URL and
    /// are asked for again next time. Nothing is kept when `sign` fails.
    pub async fn urls<F, Fut, E>(
        &self,
        image_ids: &[String],
        sign: F,
    ) -> Result<HashMap<String, String>, E>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<DownloadUrl>, E>>,
    {
        let (mut urls, to_sign) = self.at_hand(image_ids, Utc::now());
        if to_sign.is_empty() {
            return Ok(urls);
        }
        let signed = sign(to_sign).await?;
        let received_at = Utc::now();
        for url in signed {
            self.keep(&url, received_at);
            urls.insert(url.image_id, url.url);
        }
        Ok(urls)
    }

    /// The fresh URLs at hand for `image_ids`, and the ids that need signing.
    fn at_hand(
        &self,
        image_ids: &[String],
        now: DateTime<Utc>,
    ) -> (HashMap<String, String>, Vec<String>) {
        let mut urls = HashMap::with_capacity(image_ids.len());
        let mut to_sign = Vec::new();
        for id in image_ids {
            match self.cache.get(id) {
                Some(kept) if now < kept.fresh_until => {
                    urls.insert(id.clone(), kept.url);
                }
                _ => to_sign.push(id.clone()),
            }
        }
        (urls, to_sign)
    }

    fn keep(&self, url: &DownloadUrl, received_at: DateTime<Utc>) {
        let fresh_until = received_at + (url.expires_at - received_at) / 2;
        if fresh_until > received_at {
            self.cache.insert(
                url.image_id.clone(),
                Kept {
                    url: url.url.clone(),
                    fresh_until,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Duration;

    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// A `sign` that records what it was asked for and signs every id not starting with
    /// `missing` for five minutes, each URL naming the call it came from.
    fn signer(
        calls: &Mutex<Vec<Vec<String>>>,
    ) -> impl FnOnce(Vec<String>) -> std::future::Ready<Result<Vec<DownloadUrl>, String>> + '_ {
        move |asked: Vec<String>| {
            let mut calls = calls.lock().expect("lock");
            let call = calls.len();
            calls.push(asked.clone());
            let expires_at = Utc::now() + Duration::minutes(5);
            std::future::ready(Ok(asked
                .into_iter()
                .filter(|id| !id.starts_with("missing"))
                .map(|id| DownloadUrl {
                    url: format!("https://storage/images/{id}/content?token=call{call}"),
                    image_id: id,
                    expires_at,
                })
                .collect()))
        }
    }

    #[tokio::test]
    async fn a_fresh_url_is_handed_out_again_without_signing() {
        let reused = ReusedUrls::new(100);
        let calls = Mutex::default();

        let first = reused.urls(&ids(&["a", "b"]), signer(&calls)).await;
        let again = reused.urls(&ids(&["b", "a"]), signer(&calls)).await;

        assert_eq!(first.as_ref().map(HashMap::len), Ok(2));
        assert_eq!(first, again);
        assert_eq!(*calls.lock().expect("lock"), vec![ids(&["a", "b"])]);
    }

    #[tokio::test]
    async fn only_the_ids_without_a_fresh_url_are_signed() {
        let reused = ReusedUrls::new(100);
        let calls = Mutex::default();

        let first = reused.urls(&ids(&["a", "b"]), signer(&calls)).await;
        let next = reused.urls(&ids(&["b", "c"]), signer(&calls)).await;

        let (first, next) = (first.expect("urls"), next.expect("urls"));
        assert_eq!(next["b"], first["b"]);
        assert_eq!(next["c"], "https://storage/images/c/content?token=call1");
        assert_eq!(
            *calls.lock().expect("lock"),
            vec![ids(&["a", "b"]), ids(&["c"])]
        );
    }

    /// Keeps a URL for `a` received at `received_at`, expiring `lifetime` seconds later.
    fn keep_a(reused: &ReusedUrls, received_at: DateTime<Utc>, lifetime: i64) {
        let url = DownloadUrl {
            image_id: "a".into(),
            url: "u".into(),
            expires_at: received_at + Duration::seconds(lifetime),
        };
        reused.keep(&url, received_at);
    }

    #[test]
    fn a_url_is_fresh_until_half_its_lifetime_is_gone() {
        let reused = ReusedUrls::new(100);
        let received_at = Utc::now();
        keep_a(&reused, received_at, 300);

        let (at_hand, to_sign) = reused.at_hand(&ids(&["a"]), received_at + Duration::seconds(149));
        assert_eq!((at_hand.len(), to_sign.len()), (1, 0));
        let (at_hand, to_sign) = reused.at_hand(&ids(&["a"]), received_at + Duration::seconds(150));
        assert_eq!((at_hand.len(), to_sign), (0, ids(&["a"])));
    }

    #[test]
    fn a_url_received_already_expired_is_not_kept() {
        let reused = ReusedUrls::new(100);
        keep_a(&reused, Utc::now(), -1);
        assert!(reused.cache.is_empty());
    }

    #[tokio::test]
    async fn an_id_with_no_image_gets_no_url_and_is_asked_for_again() {
        let reused = ReusedUrls::new(100);
        let calls = Mutex::default();

        let first = reused.urls(&ids(&["a", "missing-1"]), signer(&calls)).await;
        let again = reused.urls(&ids(&["a", "missing-1"]), signer(&calls)).await;

        assert!(!first.expect("urls").contains_key("missing-1"));
        assert!(!again.expect("urls").contains_key("missing-1"));
        assert_eq!(
            *calls.lock().expect("lock"),
            vec![ids(&["a", "missing-1"]), ids(&["missing-1"])]
        );
    }

    #[tokio::test]
    async fn a_failed_signing_is_the_callers_error_and_keeps_nothing() {
        let reused = ReusedUrls::new(100);

        let result = reused
            .urls(&ids(&["a"]), |_| async {
                Err::<Vec<DownloadUrl>, _>("down")
            })
            .await;

        assert_eq!(result, Err("down"));
        assert!(reused.cache.is_empty());
    }

    #[tokio::test]
    async fn capacity_bounds_the_urls_kept() {
        let reused = ReusedUrls::new(10);
        let calls = Mutex::default();
        let many: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();

        let urls = reused.urls(&many, signer(&calls)).await.expect("urls");

        assert_eq!(urls.len(), 100);
        assert!(reused.cache.len() <= 10, "{}", reused.cache.len());
    }
}

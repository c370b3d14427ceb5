//! Who a verified token speaks for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A seller id: the `sub` of a verified token.
///
/// 1–128 characters of `[A-Za-z0-9._:@-]`, the same rule as the Storage Service's
/// owner id, so a `SellerId` can always be stored as an owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "seller-42")]
pub struct SellerId(String);

/// The text is not a valid seller id. Does not echo the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a seller id is 1–128 characters of letters, digits and . _ : @ -")]
pub struct InvalidSellerId;

impl SellerId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidSellerId> {
        let ok_len = !raw.is_empty() && raw.len() <= Self::MAX_LEN;
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
        if ok_len && ok_chars {
            Ok(SellerId(raw.to_owned()))
        } else {
            Err(InvalidSellerId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for SellerId {
    type Err = InvalidSellerId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SellerId::parse(s)
    }
}

impl TryFrom<String> for SellerId {
    type Error = InvalidSellerId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SellerId::parse(&value)
    }
}

impl From<SellerId> for String {
    fn from(value: SellerId) -> Self {
        value.0
    }
}

impl AsRef<str> for SellerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SellerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerClaims {
    /// `sub`.
    pub seller_id: SellerId,
    /// `iss` (always the configured issuer).
    pub issuer: String,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `iat`, Unix seconds, when present.
    pub issued_at: Option<u64>,
    /// `jti`, when present.
    pub token_id: Option<String>,
    /// The header's `kid`, when present.
    pub key_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seller_id_rules() {
        for ok in [
            "seller-42",
            "a",
            "auth0:abc",
            "me@example.com",
            &"a".repeat(128),
        ] {
            assert!(SellerId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", &"a".repeat(129), "x\n"] {
            assert!(SellerId::parse(bad).is_err(), "{bad:?}");
        }
        let id: SellerId = serde_json::from_str("\"seller-1\"").unwrap();
        assert_eq!(id.as_str(), "seller-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"seller-1\"");
        assert!(serde_json::from_str::<SellerId>("\"a/b\"").is_err());
    }
}

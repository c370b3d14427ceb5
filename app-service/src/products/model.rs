//! Product requests and responses, and the rules a new product must meet.

use chrono::{DateTime, Utc};
use iso_currency::Currency;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Largest price in minor units (10¹⁵ − 1: ten trillion euros in cents). Keeps every
/// price exact in an `i64` and in a JavaScript number.
pub const MAX_PRICE_MINOR: i64 = 999_999_999_999_999;

/// Body of `POST /product`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductRequest {
    /// 1–200 characters.
    #[schema(example = "Red running shoe")]
    pub name: String,
    /// Up to 5,000 characters.
    #[serde(default)]
    #[schema(example = "Lightweight, size 42.")]
    pub description: Option<String>,
    /// Price in the currency's minor units (cents for EUR, yen for JPY), 0 or more.
    #[schema(value_type = i64, example = 4999, minimum = 0, maximum = 999_999_999_999_999_i64)]
    pub price_minor: serde_json::Value,
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub currency: String,
    /// An image of yours that finished uploading (`image_id` from the upload's answer).
    #[schema(example = "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80")]
    pub image_id: String,
}

/// A validated product, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub image_id: Uuid,
}

impl NewProduct {
    /// Digest of the validated request: two requests with the same `Idempotency-Key`
    /// must have the same digest to count as the same request.
    pub fn request_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// A product as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub image_id: Uuid,
    /// Short-lived URL of the image (absent if storage could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One page of `GET /products`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// Newest first.
    pub items: Vec<Product>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub fn validate(request: CreateProductRequest) -> AppResult<NewProduct> {
    let name = request.name.trim();
    let name_chars = name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS {
        return Err(AppError::invalid(
            "invalid-name",
            format!("name must be 1–{MAX_NAME_CHARS} characters (got {name_chars})"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "invalid-name",
            "name must not contain control characters",
        ));
    }
    let description = request.description.unwrap_or_default();
    let description = description.trim();
    let description_chars = description.chars().count();
    if description_chars > MAX_DESCRIPTION_CHARS {
        return Err(AppError::invalid(
            "invalid-description",
            format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters (got {description_chars})"
            ),
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AppError::invalid(
            "invalid-description",
            "description must not contain control characters other than line breaks and tabs",
        ));
    }
    let price_minor = parse_price(&request.price_minor)?;
    let currency = parse_currency(&request.currency)?;
    let image_id = parse_uuid(&request.image_id).ok_or_else(|| {
        AppError::invalid(
            "invalid-image-id",
            "image_id must be a UUID like 01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80",
        )
    })?;
    Ok(NewProduct {
        name: name.to_owned(),
        description: description.to_owned(),
        price_minor,
        currency,
        image_id,
    })
}

fn parse_price(value: &serde_json::Value) -> AppResult<i64> {
    let invalid = |why: &str| {
        AppError::invalid(
            "invalid-price",
            format!(
                "price_minor {why}; send a whole number of minor units from 0 to {MAX_PRICE_MINOR}"
            ),
        )
    };
    let serde_json::Value::Number(number) = value else {
        return Err(invalid("must be a number"));
    };
    match number.as_i64() {
        Some(n) if n < 0 => Err(invalid("must not be negative")),
        Some(n) if n > MAX_PRICE_MINOR => Err(invalid("is too large")),
        Some(n) => Ok(n),
        None if number.as_u64().is_some() => Err(invalid("is too large")),
        None => match number.as_f64() {
            Some(f) if f < 0.0 => Err(invalid("must not be negative")),
            Some(f) if f.fract() == 0.0 => Err(invalid("is too large")),
            _ => Err(invalid("must be a whole number")),
        },
    }
}

fn parse_currency(raw: &str) -> AppResult<String> {
    let code = raw.trim().to_ascii_uppercase();
    match Currency::from_code(&code) {
        // Codes without minor units (gold, test and "no currency" codes) and
        // withdrawn codes are not prices anyone can pay.
        Some(c) if c.exponent().is_some() && c.is_superseded().is_none() => Ok(code),
        _ => Err(AppError::invalid(
            "unknown-currency",
            format!(
                "currency `{}` is not an ISO 4217 currency code like EUR or USD",
                raw.chars().take(16).collect::<String>()
            ),
        )),
    }
}

/// Parses a UUID in its usual hyphenated form (no braces, no URN).
pub fn parse_uuid(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 {
        return None;
    }
    Uuid::try_parse(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(overrides: serde_json::Value) -> CreateProductRequest {
        let mut body = json!({
            "name": "Shoe",
            "description": "Red",
            "price_minor": 4999,
            "currency": "EUR",
            "image_id": "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80",
        });
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    fn code(overrides: serde_json::Value) -> &'static str {
        match validate(request(overrides)) {
            Err(AppError::Invalid { code, .. }) => code,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_product_is_normalised() {
        let p = validate(request(
            json!({"name": "  Shoe ", "currency": "jpy", "price_minor": 0}),
        ))
        .unwrap();
        assert_eq!(p.name, "Shoe");
        assert_eq!(p.currency, "JPY");
        assert_eq!(p.price_minor, 0);
        let name = "é".repeat(MAX_NAME_CHARS);
        assert!(validate(request(json!({ "name": name }))).is_ok());
        let max = validate(request(json!({ "price_minor": MAX_PRICE_MINOR }))).unwrap();
        assert_eq!(max.price_minor, MAX_PRICE_MINOR);
        let no_description: CreateProductRequest = serde_json::from_value(json!({
            "name": "x", "price_minor": 1, "currency": "USD",
            "image_id": "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80"
        }))
        .unwrap();
        assert_eq!(validate(no_description).unwrap().description, "");
    }

    #[test]
    fn each_bad_field_has_its_code() {
        let cases = [
            (json!({"name": ""}), "invalid-name"),
            (json!({"name": "a".repeat(201)}), "invalid-name"),
            (json!({"name": "a\u{7}b"}), "invalid-name"),
            (
                json!({"description": "d".repeat(5001)}),
                "invalid-description",
            ),
            (json!({"price_minor": -1}), "invalid-price"),
            (
                json!({"price_minor": 1_000_000_000_000_000_i64}),
                "invalid-price",
            ),
            (json!({"price_minor": u64::MAX}), "invalid-price"),
            (json!({"price_minor": 1e30}), "invalid-price"),
            (json!({"price_minor": 19.99}), "invalid-price"),
            (json!({"price_minor": "4999"}), "invalid-price"),
            (json!({"price_minor": null}), "invalid-price"),
            (json!({"currency": "EURO"}), "unknown-currency"),
            (json!({"currency": "ZZZ"}), "unknown-currency"),
            (json!({"currency": "XXX"}), "unknown-currency"),
            (json!({"currency": "XAU"}), "unknown-currency"),
            (json!({"currency": ""}), "unknown-currency"),
            (json!({"image_id": "not-a-uuid"}), "invalid-image-id"),
            (
                json!({"image_id": "01936f2e8d4b7c1a9e2f3b4c5d6e7f80"}),
                "invalid-image-id",
            ),
            (json!({"image_id": ""}), "invalid-image-id"),
        ];
        for (overrides, expected) in cases {
            let shown = overrides.to_string();
            assert_eq!(code(overrides), expected, "{shown}");
        }
    }

    #[test]
    fn overflowing_price_from_raw_json_is_invalid_price() {
        let raw = r#"{"name":"x","price_minor":123456789012345678901234567890,"currency":"EUR","image_id":"01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f80"}"#;
        let request: CreateProductRequest = serde_json::from_str(raw).unwrap();
        assert!(matches!(
            validate(request),
            Err(AppError::Invalid {
                code: "invalid-price",
                ..
            })
        ));
    }

    #[test]
    fn request_hash_depends_on_every_field() {
        let base = validate(request(json!({}))).unwrap();
        let same = validate(request(json!({"name": " Shoe "}))).unwrap();
        assert_eq!(base.request_hash(), same.request_hash());
        for change in [
            json!({"name": "Boot"}),
            json!({"description": "Blue"}),
            json!({"price_minor": 5000}),
            json!({"currency": "USD"}),
            json!({"image_id": "01936f2e-8d4b-7c1a-9e2f-3b4c5d6e7f81"}),
        ] {
            let other = validate(request(change.clone())).unwrap();
            assert_ne!(base.request_hash(), other.request_hash(), "{change}");
        }
    }
}

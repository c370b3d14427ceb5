//! Products: `POST /product`, `GET /products`, `GET /products/{id}`.
//!
//! - [`model`]: request/response types and the rules a product must meet.
//! - [`repo`]: the SQL.
//!
//! A product may only point at an image that storage has, that is complete, and that
//! belongs to the seller; storage is asked every time (it is the one source of truth
//! for images). `Idempotency-Key` makes creation safe to retry.

pub mod model;
pub mod repo;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use service_kit::auth::{Seller, SellerId};
use service_kit::{AppJson, AppQuery};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::state::AppState;
use model::{CreateProductRequest, NewProduct, Product, ProductPage};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response that replays an earlier request with the same key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

fn idempotency_key(headers: &HeaderMap) -> AppResult<Option<String>> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(AppError::BadRequest {
            code: "invalid-idempotency-key",
            message: format!(
                "Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters, e.g. a UUID"
            ),
        });
    }
    Ok(Some(key.to_owned()))
}

/// The answer to a create: 201, `Location`, and whether it is a replay.
fn created(product: Product, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(&product)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/products/{}", product.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// A replay of `key`: the same product if the body matches, else 422.
fn replay(stored: repo::StoredProduct, new: &NewProduct) -> AppResult<Product> {
    if stored.request_hash.as_deref() == Some(new.request_hash().as_str()) {
        Ok(stored.product)
    } else {
        Err(AppError::IdempotencyKeyReused)
    }
}

/// Storage must have the image, complete, and owned by this seller.
async fn check_image(state: &AppState, seller: &SellerId, image_id: Uuid) -> AppResult<()> {
    match state.storage.image(&image_id).await? {
        // Another seller's image is reported exactly like a missing one, so image ids
        // cannot be probed.
        None => Err(AppError::ImageNotFound(image_id.to_string())),
        Some(image) if image.owner_id != seller.as_str() => {
            Err(AppError::ImageNotFound(image_id.to_string()))
        }
        Some(image) if image.state != "complete" => Err(AppError::ImageNotReady(image.image_id)),
        Some(_) => Ok(()),
    }
}

/// Fills in short-lived image URLs, reusing fresh ones ([`service_kit::download_urls`]);
/// products are still returned if storage is down.
async fn attach_image_urls(state: &AppState, products: &mut [Product]) {
    if products.is_empty() {
        return;
    }
    let ids: Vec<String> = products.iter().map(|p| p.image_id.to_string()).collect();
    let signed = state.image_urls.urls(&ids, |to_sign| async move {
        state.storage.download_urls(&to_sign).await
    });
    match signed.await {
        Ok(urls) => {
            for product in products.iter_mut() {
                product.image_url = urls.get(&product.image_id.to_string()).cloned();
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not get image URLs; products returned without them")
        }
    }
}

/// Creates a product for one of your uploaded images.
///
/// Send an `Idempotency-Key` header (e.g. a UUID) to make retries safe: the same key
/// with the same body returns the product created the first time (with
/// `Idempotent-Replayed: true`); the same key with a different body is refused.
#[utoipa::path(
    post,
    path = "/product",
    tag = "products",
    request_body = CreateProductRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; makes retries safe")),
    responses(
        (status = 201, description = "Created (or replayed: see `Idempotent-Replayed`)", body = Product),
        (status = 400, description = "`invalid-idempotency-key`, `invalid-json`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 409, description = "The image is still being stored (`image-not-ready`)", body = service_kit::ErrorEnvelope),
        (status = 413, description = "Body over the JSON limit (`body-too-large`)", body = service_kit::ErrorEnvelope),
        (status = 415, description = "Not JSON (`json-content-type-required`)", body = service_kit::ErrorEnvelope),
        (status = 422, description = "`invalid-name`, `invalid-description`, `invalid-price`, `unknown-currency`, `invalid-image-id`, `image-not-found`, `idempotency-key-reused`, `invalid-request-body`", body = service_kit::ErrorEnvelope),
        (status = 503, description = "Storage unavailable (`storage-unavailable`)", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn create_product(
    State(state): State<AppState>,
    Seller(seller): Seller,
    headers: HeaderMap,
    AppJson(request): AppJson<CreateProductRequest>,
) -> AppResult<Response> {
    let key = idempotency_key(&headers)?;
    let new = model::validate(request)?;
    if let Some(key) = &key {
        if let Some(stored) = state
            .products
            .by_idempotency_key(seller.as_str(), key)
            .await?
        {
            let mut product = replay(stored, &new)?;
            attach_image_urls(&state, std::slice::from_mut(&mut product)).await;
            return Ok(created(product, true));
        }
    }
    check_image(&state, &seller, new.image_id).await?;
    let mut product = match state
        .products
        .insert(
            seller.as_str(),
            &new,
            key.as_deref(),
            &state.audit,
            audit_events::request_id(&headers),
        )
        .await
    {
        Ok(product) => product,
        // A concurrent request with the same key won the race: answer like a replay.
        Err(e) if key.is_some() && service_kit::db::is_unique_violation(&e) => {
            let key = key.as_deref().unwrap_or_default();
            let stored = state
                .products
                .by_idempotency_key(seller.as_str(), key)
                .await?
                .ok_or_else(|| AppError::Database("idempotent insert lost its row".into()))?;
            let mut product = replay(stored, &new)?;
            attach_image_urls(&state, std::slice::from_mut(&mut product)).await;
            return Ok(created(product, true));
        }
        Err(e) => return Err(e.into()),
    };
    metrics::counter!("app_products_created_total").increment(1);
    tracing::info!(seller = %seller, product_id = %product.id, image_id = %product.image_id, "product created");
    attach_image_urls(&state, std::slice::from_mut(&mut product)).await;
    Ok(created(product, false))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Lists your products, newest first (keyset pagination).
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of your products", body = ProductPage),
        (status = 400, description = "`invalid-limit`, `invalid-cursor`, `invalid-query` (e.g. a repeated parameter)", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn list_products(
    State(state): State<AppState>,
    Seller(seller): Seller,
    AppQuery(params): AppQuery<ListParams>,
) -> AppResult<Json<ProductPage>> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| AppError::BadRequest {
                code: "invalid-limit",
                message: format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
            })?,
    };
    let before = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(model::parse_uuid(raw).ok_or_else(|| AppError::BadRequest {
            code: "invalid-cursor",
            message: "cursor must be the next_cursor of a previous page".into(),
        })?),
    };
    // One extra row says whether there is a next page.
    let mut items = state
        .products
        .list(seller.as_str(), before, limit + 1)
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|p| p.id.to_string())
    } else {
        None
    };
    attach_image_urls(&state, &mut items).await;
    Ok(Json(ProductPage { items, next_cursor }))
}

/// One of your products. Another seller's product is a 404, like a missing one.
#[utoipa::path(
    get,
    path = "/products/{product_id}",
    tag = "products",
    params(("product_id" = String, Path, description = "Product id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 400, description = "`invalid-product-id`", body = service_kit::ErrorEnvelope),
        (status = 401, description = "No valid seller token", body = service_kit::ErrorEnvelope),
        (status = 404, description = "`product-not-found`", body = service_kit::ErrorEnvelope),
    )
)]
pub async fn get_product(
    State(state): State<AppState>,
    Seller(seller): Seller,
    Path(product_id): Path<String>,
) -> AppResult<Json<Product>> {
    let id = model::parse_uuid(&product_id).ok_or_else(|| AppError::BadRequest {
        code: "invalid-product-id",
        message: "the product id must be a UUID".into(),
    })?;
    let mut product = state
        .products
        .get(seller.as_str(), id)
        .await?
        .ok_or(AppError::ProductNotFound)?;
    attach_image_urls(&state, std::slice::from_mut(&mut product)).await;
    Ok(Json(product))
}

//! [`AuditEvent`]: one security-relevant fact, and [`EventType`], what kind of fact.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What happened. The wire name (`upload.url_issued`, …) is also the AMQP routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// The App Service gave a seller a pre-signed upload URL.
    #[serde(rename = "upload.url_issued")]
    UploadUrlIssued,
    /// The Storage Service stored the bytes of a pre-signed upload.
    #[serde(rename = "upload.accepted")]
    UploadAccepted,
    /// The Storage Service refused a pre-signed upload (`reason` = the error code).
    #[serde(rename = "upload.rejected")]
    UploadRejected,
    /// The Storage Service minted a download URL for an image.
    #[serde(rename = "download.url_issued")]
    DownloadUrlIssued,
    /// The App Service created a product.
    #[serde(rename = "product.created")]
    ProductCreated,
    /// The Import Service started an import job.
    #[serde(rename = "import.started")]
    ImportStarted,
    /// An import job ended (`reason`: `completed`, or the job's error code).
    #[serde(rename = "import.finished")]
    ImportFinished,
    /// One file of an import failed for good (`reason` = its code).
    #[serde(rename = "import.item_failed")]
    ImportItemFailed,
    /// A request's credentials were refused (`reason` = the error code).
    #[serde(rename = "auth.failed")]
    AuthFailed,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::UploadUrlIssued,
        EventType::UploadAccepted,
        EventType::UploadRejected,
        EventType::DownloadUrlIssued,
        EventType::ProductCreated,
        EventType::ImportStarted,
        EventType::ImportFinished,
        EventType::ImportItemFailed,
        EventType::AuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UploadUrlIssued => "upload.url_issued",
            EventType::UploadAccepted => "upload.accepted",
            EventType::UploadRejected => "upload.rejected",
            EventType::DownloadUrlIssued => "download.url_issued",
            EventType::ProductCreated => "product.created",
            EventType::ImportStarted => "import.started",
            EventType::ImportFinished => "import.finished",
            EventType::ImportItemFailed => "import.item_failed",
            EventType::AuthFailed => "auth.failed",
        }
    }

    pub fn parse(raw: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event. Never carries a token, key or other secret: seller ids, request
/// ids, resource ids and stable error codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Unique id (UUIDv7, time-ordered): the consumer stores each id once.
    pub id: Uuid,
    /// What happened (also the AMQP routing key).
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened (milliseconds, UTC).
    pub time: DateTime<Utc>,
    /// The service that recorded it, e.g. `storage-service`.
    pub service: String,
    /// The seller concerned, when known (not for a refused token).
    pub seller_id: Option<String>,
    /// The `x-request-id` of the request that caused it, when there was one.
    pub request_id: Option<String>,
    /// What it is about: upload id, image id, product id, import job or item id.
    pub subject_id: Option<String>,
    /// Stable code of a refusal or failure, or how an import ended.
    pub reason: Option<String>,
    /// More non-secret context, e.g. `job_id`, `image_id`, `provider`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// A new event of `kind` recorded by `service` now.
    pub fn new(service: &str, kind: EventType) -> Self {
        AuditEvent {
            id: Uuid::now_v7(),
            kind,
            time: Utc::now().trunc_subsecs(3),
            service: service.to_owned(),
            seller_id: None,
            request_id: None,
            subject_id: None,
            reason: None,
            details: BTreeMap::new(),
        }
    }

    pub fn seller(mut self, seller_id: impl Into<String>) -> Self {
        self.seller_id = Some(seller_id.into());
        self
    }

    pub fn seller_opt(mut self, seller_id: Option<String>) -> Self {
        self.seller_id = seller_id;
        self
    }

    pub fn request(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn subject(mut self, subject_id: impl Into<String>) -> Self {
        self.subject_id = Some(subject_id.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// The `x-request-id` of a request (set by `service_kit::http::standard_layers`).
pub fn request_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(service_kit::telemetry::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for kind in EventType::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::from_value::<EventType>(json).unwrap(), kind);
        }
        assert_eq!(EventType::parse("upload"), None);
    }

    #[test]
    fn an_event_serializes_with_its_type_and_without_empty_details() {
        let event = AuditEvent::new("app-service", EventType::ProductCreated)
            .seller("s1")
            .subject("p1");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "product.created");
        assert_eq!(json["seller_id"], "s1");
        assert!(json.get("details").is_none());
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

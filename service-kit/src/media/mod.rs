//! The image types Vitrine accepts, in one place for every service.
//!
//! - [`synthetic`]: dependency-free generators of structurally valid PNG/JPEG
//!   files (any size, streamed) for tests, emulators and benchmarks.

pub mod synthetic;

use serde::{Deserialize, Serialize};

/// An image format Vitrine stores. Anything else is refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
    Avif,
}

impl ImageType {
    pub const ALL: [ImageType; 5] = [
        ImageType::Jpeg,
        ImageType::Png,
        ImageType::Webp,
        ImageType::Gif,
        ImageType::Avif,
    ];

    /// The canonical MIME type, e.g. `image/png`.
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Gif => "image/gif",
            ImageType::Avif => "image/avif",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Webp => "webp",
            ImageType::Gif => "gif",
            ImageType::Avif => "avif",
        }
    }

    /// Parses a MIME type as sent in JSON or a `Content-Type` header.
    /// Case-insensitive, parameters (`; charset=…`) ignored, `image/jpg` accepted
    /// as an alias of `image/jpeg`.
    pub fn from_mime(value: &str) -> Option<ImageType> {
        let essence = value.split(';').next().unwrap_or("").trim();
        let lower = essence.to_ascii_lowercase();
        match lower.as_str() {
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(ImageType::Jpeg),
            "image/png" => Some(ImageType::Png),
            "image/webp" => Some(ImageType::Webp),
            "image/gif" => Some(ImageType::Gif),
            "image/avif" => Some(ImageType::Avif),
            _ => None,
        }
    }

    /// The accepted MIME types, comma separated, for error messages.
    pub fn accepted_list() -> String {
        ImageType::ALL
            .iter()
            .map(|t| t.mime())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for ImageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mime())
    }
}

impl From<ImageType> for String {
    fn from(value: ImageType) -> Self {
        value.mime().to_owned()
    }
}

impl TryFrom<String> for ImageType {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ImageType::from_mime(&value).ok_or_else(|| {
            format!(
                "unsupported image type `{value}`; accepted: {}",
                ImageType::accepted_list()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mime_with_parameters_and_aliases() {
        assert_eq!(ImageType::from_mime("IMAGE/PNG; q=1"), Some(ImageType::Png));
        assert_eq!(ImageType::from_mime("image/jpg"), Some(ImageType::Jpeg));
        assert_eq!(ImageType::from_mime("text/html"), None);
        assert_eq!(ImageType::from_mime("image/svg+xml"), None);
    }

    #[test]
    fn serde_round_trip_uses_mime() {
        let json = serde_json::to_string(&ImageType::Webp).unwrap();
        assert_eq!(json, "\"image/webp\"");
        let back: ImageType = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ImageType::Webp);
        assert!(serde_json::from_str::<ImageType>("\"image/bmp\"").is_err());
    }
}

//! Domain types parsed at the edge, so handlers never re-check raw strings.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who owns an image: a seller id as the App Service authenticated it.
/// 1–128 characters of `[A-Za-z0-9._:@-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OwnerId(String);

impl OwnerId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok_len = !raw.is_empty() && raw.len() <= 128;
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
        if ok_len && ok_chars {
            Ok(OwnerId(raw.to_owned()))
        } else {
            Err("owner id must be 1–128 characters of letters, digits and . _ : @ -".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OwnerId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OwnerId::parse(&value)
    }
}

impl From<OwnerId> for String {
    fn from(value: OwnerId) -> Self {
        value.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest, parsed from 64 hex digits (either case), shown lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl Sha256Hex {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        if raw.len() != 64 || hex::decode_to_slice(raw, &mut out).is_err() {
            return Err("sha256 must be 64 hexadecimal digits".to_owned());
        }
        Ok(Sha256Hex(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Sha256Hex::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An MD5 digest (Google Drive reports `md5Checksum`), 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Md5Hex(pub [u8; 16]);

impl Md5Hex {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut out = [0u8; 16];
        if raw.len() != 32 || hex::decode_to_slice(raw, &mut out).is_err() {
            return Err("md5 must be 32 hexadecimal digits".to_owned());
        }
        Ok(Md5Hex(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A file name kept only as display metadata: never a path, never an object key.
///
/// Sanitising keeps the last path component, drops control characters (NUL included)
/// and characters that are unsafe in a `Content-Disposition`, trims dots and spaces,
/// and cuts to 200 characters. An empty result becomes `image.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileName(String);

pub const MAX_FILE_NAME_CHARS: usize = 200;

impl FileName {
    pub fn sanitise(raw: &str, fallback_extension: &str) -> FileName {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let cleaned: String = last
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':'))
            .collect();
        let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
        let cut: String = trimmed.chars().take(MAX_FILE_NAME_CHARS).collect();
        let cut = cut.trim_end().to_owned();
        if cut.is_empty() {
            FileName(format!("image.{fallback_extension}"))
        } else {
            FileName(cut)
        }
    }

    /// A name read back from the database (already sanitised when stored).
    pub fn from_stored(value: String) -> FileName {
        FileName(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Image ids: UUIDv7 (time-ordered for index locality, 74 random bits).
pub fn new_image_id() -> Uuid {
    Uuid::now_v7()
}

/// Upload ids: UUIDv7 too. Each `POST /internal/presign` inserts them into the primary-key
/// index of `pending_uploads`; time-ordered ids land on its last page, where random ones
/// (UUIDv4) touched a different leaf page per row and made every batch write and
/// checkpoint several pages more (docs/benchmarks.md, `POST /uploads`, *Fifth look*). An
/// upload id is no credential: the signed token in the URL is.
pub fn new_upload_id() -> Uuid {
    Uuid::now_v7()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ImageSource {
    Upload,
    GoogleDrive,
    Dropbox,
}

impl ImageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSource::Upload => "upload",
            ImageSource::GoogleDrive => "google-drive",
            ImageSource::Dropbox => "dropbox",
        }
    }

    pub fn parse(raw: &str) -> Option<ImageSource> {
        match raw {
            "upload" => Some(ImageSource::Upload),
            "google-drive" => Some(ImageSource::GoogleDrive),
            "dropbox" => Some(ImageSource::Dropbox),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_time_ordered_and_distinct() {
        // Each id sorts after the one before it, as text too (the primary key is TEXT),
        // so that inserts land on the index's last page.
        let ids: Vec<String> = (0..1000).map(|_| new_upload_id().to_string()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(ids
            .iter()
            .all(|id| Uuid::parse_str(id).unwrap().get_version_num() == 7));
    }

    #[test]
    fn file_names_are_sanitised_not_rejected() {
        assert_eq!(
            FileName::sanitise("../../etc/passwd", "png").as_str(),
            "passwd"
        );
        assert_eq!(FileName::sanitise("a\0b.png", "png").as_str(), "ab.png");
        assert_eq!(FileName::sanitise("..", "png").as_str(), "image.png");
        assert_eq!(
            FileName::sanitise("C:\\x\\photo.jpg", "jpg").as_str(),
            "photo.jpg"
        );
        let long = "é".repeat(300);
        assert_eq!(
            FileName::sanitise(&long, "png").as_str().chars().count(),
            200
        );
        assert_eq!(
            FileName::sanitise("say \"hi\".png", "png").as_str(),
            "say hi.png"
        );
    }

    #[test]
    fn digests_parse_either_case() {
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let parsed = Sha256Hex::parse(upper).unwrap();
        assert_eq!(parsed.to_hex(), upper.to_ascii_lowercase());
        assert!(Sha256Hex::parse("abc").is_err());
        assert!(Sha256Hex::parse(&"g".repeat(64)).is_err());
        assert!(Md5Hex::parse("d41d8cd98f00b204e9800998ecf8427e").is_ok());
    }

    #[test]
    fn owner_ids() {
        assert!(OwnerId::parse("seller-42").is_ok());
        assert!(OwnerId::parse("").is_err());
        assert!(OwnerId::parse("a/b").is_err());
        assert!(OwnerId::parse(&"a".repeat(129)).is_err());
    }
}

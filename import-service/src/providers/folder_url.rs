//! Folder URLs as users paste them → which provider, which folder.
//!
//! This is the only place a user-supplied URL is read, and it is only *parsed*: the
//! service never fetches it. The provider APIs are called at their configured bases
//! with the id (Drive) or the normalised shared link (Dropbox) taken from it, so a
//! pasted URL cannot make the service connect anywhere else (no SSRF).
//!
//! Accepted (scheme `https` or `http`, host exactly as listed, case-insensitive, no
//! user info, no port):
//!
//! | provider | forms |
//! |---|---|
//! | Google Drive (`drive.google.com`) | `/drive/folders/ID`, `/drive/u/N/folders/ID`, `/drive/mobile/folders/ID`, `/open?id=ID`, `/folderview?id=ID`; any of them with `?usp=sharing` and friends; `resourcekey=KEY` kept |
//! | Dropbox (`www.dropbox.com`, `dropbox.com`) | `/sh/ID/KEY` (legacy), `/scl/fo/ID/KEY?rlkey=RLKEY` (current); `dl`, `st`, `e` and other presentation parameters dropped |
//!
//! Everything else is refused with a message saying what was expected: other hosts
//! (including look-alikes such as `drive.google.com.example.net` and
//! `drive.google.com@example.net`), IP literals, other schemes (`javascript:`,
//! `file:`, `data:`), file links (`/file/d/…`, `/s/…`, `/scl/fi/…`), and bare ids.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The two providers Vitrine imports from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    GoogleDrive,
    Dropbox,
}

impl Provider {
    /// As stored and shown: `google_drive`, `dropbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GoogleDrive => "google_drive",
            Provider::Dropbox => "dropbox",
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            Provider::GoogleDrive => "Google Drive",
            Provider::Dropbox => "Dropbox",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A folder to import, as the provider APIs want it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum FolderRef {
    GoogleDrive {
        folder_id: String,
        /// Needed for some link-shared folders; sent as `X-Goog-Drive-Resource-Keys`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_key: Option<String>,
    },
    Dropbox {
        /// The shared link, normalised (presentation parameters dropped), exactly as
        /// the Dropbox API's `shared_link.url` wants it.
        shared_link: String,
    },
}

impl FolderRef {
    pub fn provider(&self) -> Provider {
        match self {
            FolderRef::GoogleDrive { .. } => Provider::GoogleDrive,
            FolderRef::Dropbox { .. } => Provider::Dropbox,
        }
    }

    /// A stable key for "the same folder": Drive folder id, or the Dropbox link.
    pub fn source_key(&self) -> &str {
        match self {
            FolderRef::GoogleDrive { folder_id, .. } => folder_id,
            FolderRef::Dropbox { shared_link } => shared_link,
        }
    }
}

/// Why a URL is not an importable folder. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FolderUrlError(String);

impl FolderUrlError {
    fn new(message: impl Into<String>) -> Self {
        FolderUrlError(message.into())
    }

    /// Stable code for the API's error envelope.
    pub fn code(&self) -> &'static str {
        "invalid-folder-url"
    }
}

const DRIVE_EXAMPLE: &str = "https://drive.google.com/drive/folders/<folder id>";
const DROPBOX_EXAMPLE: &str = "https://www.dropbox.com/scl/fo/<id>/<key>?rlkey=<key>";

/// Parses a pasted folder URL, for either provider.
pub fn parse(raw: &str) -> Result<FolderRef, FolderUrlError> {
    let url = parse_url(raw)?;
    match provider_of_host(&url)? {
        Provider::GoogleDrive => parse_drive(&url),
        Provider::Dropbox => parse_dropbox(&url),
    }
}

/// Parses a folder URL that must belong to `expected` (e.g. `POST /import/dropbox`).
pub fn parse_for(expected: Provider, raw: &str) -> Result<FolderRef, FolderUrlError> {
    let folder = parse(raw)?;
    if folder.provider() != expected {
        return Err(FolderUrlError::new(format!(
            "this is a {} link; this import takes {} folder links like {}",
            folder.provider().display_name(),
            expected.display_name(),
            match expected {
                Provider::GoogleDrive => DRIVE_EXAMPLE,
                Provider::Dropbox => DROPBOX_EXAMPLE,
            }
        )));
    }
    Ok(folder)
}

fn parse_url(raw: &str) -> Result<Url, FolderUrlError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FolderUrlError::new(format!(
            "paste a folder link, like {DRIVE_EXAMPLE} or {DROPBOX_EXAMPLE}"
        )));
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(FolderUrlError::new(format!(
            "the link is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(trimmed).map_err(|_| {
        FolderUrlError::new(format!(
            "this is not a link; paste the folder's full address, like {DRIVE_EXAMPLE} or {DROPBOX_EXAMPLE}"
        ))
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(FolderUrlError::new(format!(
            "only https:// folder links are accepted (got a `{}:` link)",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FolderUrlError::new(
            "folder links never contain a user name or password (`…@host`)",
        ));
    }
    if url.port().is_some() {
        return Err(FolderUrlError::new("folder links never name a port"));
    }
    Ok(url)
}

fn provider_of_host(url: &Url) -> Result<Provider, FolderUrlError> {
    match url.host() {
        Some(Host::Domain(host)) => match host.to_ascii_lowercase().as_str() {
            "drive.google.com" => Ok(Provider::GoogleDrive),
            "www.dropbox.com" | "dropbox.com" => Ok(Provider::Dropbox),
            other => Err(FolderUrlError::new(format!(
                "`{other}` is not Google Drive (drive.google.com) or Dropbox (www.dropbox.com)"
            ))),
        },
        Some(Host::Ipv4(_)) | Some(Host::Ipv6(_)) => Err(FolderUrlError::new(
            "links to IP addresses are not accepted; paste a drive.google.com or dropbox.com folder link",
        )),
        None => Err(FolderUrlError::new("the link has no host")),
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Drive ids and resource keys: letters, digits, `-` and `_`.
fn valid_drive_token(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_drive(url: &Url) -> Result<FolderRef, FolderUrlError> {
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let folder_id = match segments.as_slice() {
        ["drive", "folders", id, ..] => Some((*id).to_owned()),
        ["drive", "u", n, "folders", id, ..] if n.bytes().all(|b| b.is_ascii_digit()) => {
            Some((*id).to_owned())
        }
        ["drive", "mobile", "folders", id, ..] => Some((*id).to_owned()),
        ["open"] | ["folderview"] => query(url, "id"),
        ["file", "d", ..] | ["uc"] => {
            return Err(FolderUrlError::new(format!(
                "this is a link to a single file; share the folder and paste its link, like {DRIVE_EXAMPLE}"
            )))
        }
        _ => None,
    };
    let folder_id = folder_id.ok_or_else(|| {
        FolderUrlError::new(format!(
            "this Google Drive link does not point at a folder; it should look like {DRIVE_EXAMPLE}"
        ))
    })?;
    if !valid_drive_token(&folder_id, 128) {
        return Err(FolderUrlError::new(
            "the folder id in this Google Drive link is not valid",
        ));
    }
    let resource_key = match query(url, "resourcekey") {
        Some(key) if valid_drive_token(&key, 128) => Some(key),
        Some(_) => {
            return Err(FolderUrlError::new(
                "the resourcekey in this Google Drive link is not valid",
            ))
        }
        None => None,
    };
    Ok(FolderRef::GoogleDrive {
        folder_id,
        resource_key,
    })
}

/// Dropbox link path parts: letters, digits, `-`, `_`, `.`.
fn valid_dropbox_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_dropbox(url: &Url) -> Result<FolderRef, FolderUrlError> {
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let not_a_folder = || {
        FolderUrlError::new(format!(
            "this Dropbox link does not point at a shared folder; it should look like {DROPBOX_EXAMPLE}"
        ))
    };
    match segments.as_slice() {
        ["sh", id, key, ..] => {
            if !valid_dropbox_token(id) || !valid_dropbox_token(key) {
                return Err(not_a_folder());
            }
            Ok(FolderRef::Dropbox {
                shared_link: format!("https://www.dropbox.com/sh/{id}/{key}"),
            })
        }
        ["scl", "fo", id, rest @ ..] => {
            if !valid_dropbox_token(id) || rest.len() > 1 {
                return Err(not_a_folder());
            }
            if let Some(key) = rest.first() {
                if !valid_dropbox_token(key) {
                    return Err(not_a_folder());
                }
            }
            let rlkey = query(url, "rlkey").ok_or_else(|| {
                FolderUrlError::new(
                    "this Dropbox link has no `rlkey`; copy the whole link from Dropbox's Share → Copy link",
                )
            })?;
            if !valid_dropbox_token(&rlkey) {
                return Err(FolderUrlError::new(
                    "the rlkey in this Dropbox link is not valid",
                ));
            }
            let path = match rest.first() {
                Some(key) => format!("{id}/{key}"),
                None => (*id).to_owned(),
            };
            Ok(FolderRef::Dropbox {
                shared_link: format!("https://www.dropbox.com/scl/fo/{path}?rlkey={rlkey}"),
            })
        }
        ["s", ..] | ["scl", "fi", ..] => Err(FolderUrlError::new(format!(
            "this is a link to a single file; share the folder and paste its link, like {DROPBOX_EXAMPLE}"
        ))),
        _ => Err(not_a_folder()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1AbC-dEf_GhIjKlMnOpQrStUvWxYz0123";

    fn drive(id: &str, key: Option<&str>) -> FolderRef {
        FolderRef::GoogleDrive {
            folder_id: id.to_owned(),
            resource_key: key.map(str::to_owned),
        }
    }

    fn dropbox(link: &str) -> FolderRef {
        FolderRef::Dropbox {
            shared_link: link.to_owned(),
        }
    }

    #[test]
    fn every_drive_form_users_paste() {
        let cases = [
            (format!("https://drive.google.com/drive/folders/{ID}"), None),
            (
                format!("https://drive.google.com/drive/folders/{ID}?usp=sharing"),
                None,
            ),
            (
                format!("https://drive.google.com/drive/folders/{ID}?usp=drive_link"),
                None,
            ),
            (
                format!("https://drive.google.com/drive/folders/{ID}/"),
                None,
            ),
            (
                format!("https://drive.google.com/drive/u/0/folders/{ID}"),
                None,
            ),
            (
                format!("https://drive.google.com/drive/u/3/folders/{ID}?usp=sharing"),
                None,
            ),
            (
                format!("https://drive.google.com/drive/mobile/folders/{ID}"),
                None,
            ),
            (format!("https://drive.google.com/open?id={ID}"), None),
            (
                format!("https://drive.google.com/open?id={ID}&usp=sharing"),
                None,
            ),
            (format!("https://drive.google.com/folderview?id={ID}"), None),
            (
                format!("  https://DRIVE.google.com/drive/folders/{ID}  "),
                None,
            ),
            (format!("http://drive.google.com/drive/folders/{ID}"), None),
            (
                format!("https://drive.google.com/drive/folders/{ID}?resourcekey=0-AbCdEf_123"),
                Some("0-AbCdEf_123"),
            ),
            (
                format!(
                    "https://drive.google.com/drive/u/1/folders/{ID}?usp=sharing&resourcekey=0-xyz"
                ),
                Some("0-xyz"),
            ),
            (
                format!("https://drive.google.com/open?id={ID}&resourcekey=0-k"),
                Some("0-k"),
            ),
        ];
        for (url, key) in cases {
            assert_eq!(parse(&url), Ok(drive(ID, key)), "{url}");
            assert_eq!(
                parse_for(Provider::GoogleDrive, &url).unwrap().provider(),
                Provider::GoogleDrive
            );
        }
    }

    #[test]
    fn every_dropbox_form_users_paste() {
        let cases = [
            (
                "https://www.dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?rlkey=k9z8y7&dl=0",
                "https://www.dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?rlkey=k9z8y7",
            ),
            (
                "https://www.dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?rlkey=k9z8y7&st=q1w2e3&dl=0",
                "https://www.dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?rlkey=k9z8y7",
            ),
            (
                "https://dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?dl=0&rlkey=k9z8y7",
                "https://www.dropbox.com/scl/fo/abc123xyz/AHhc-Ke9_Lx?rlkey=k9z8y7",
            ),
            (
                "https://www.dropbox.com/scl/fo/abc123xyz?rlkey=k9z8y7",
                "https://www.dropbox.com/scl/fo/abc123xyz?rlkey=k9z8y7",
            ),
            (
                "https://www.dropbox.com/sh/a1b2c3d4e5/AAB_cd-EF.gh?dl=0",
                "https://www.dropbox.com/sh/a1b2c3d4e5/AAB_cd-EF.gh",
            ),
            (
                "https://www.dropbox.com/sh/a1b2c3d4e5/AAB_cd-EF.gh/",
                "https://www.dropbox.com/sh/a1b2c3d4e5/AAB_cd-EF.gh",
            ),
        ];
        for (url, normalised) in cases {
            assert_eq!(parse(url), Ok(dropbox(normalised)), "{url}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let cases = [
            "",
            "   ",
            ID,
            "drive.google.com/drive/folders/abc",
            "javascript:alert(1)//drive.google.com/drive/folders/abc",
            "file:///etc/passwd",
            "data:text/html,<script>alert(1)</script>",
            "ftp://drive.google.com/drive/folders/abc",
            "https://drive.google.com.evil.example/drive/folders/abc",
            "https://evil.example/drive.google.com/drive/folders/abc",
            "https://drive.google.com@evil.example/drive/folders/abc",
            "https://user:pass@drive.google.com/drive/folders/abc",
            "https://drive.google.com:8443/drive/folders/abc",
            "https://docs.google.com/drive/folders/abc",
            "https://google.com/drive/folders/abc",
            "https://142.250.185.78/drive/folders/abc",
            "https://[::1]/drive/folders/abc",
            "http://127.0.0.1:8080/drive/folders/abc",
            "http://169.254.169.254/latest/meta-data/",
            "https://drive.google.com/file/d/1AbC/view?usp=sharing",
            "https://drive.google.com/uc?id=1AbC&export=download",
            "https://drive.google.com/drive/my-drive",
            "https://drive.google.com/drive/folders/",
            "https://drive.google.com/drive/folders/abc%2F..%2Fdef",
            "https://drive.google.com/drive/folders/abc?resourcekey=bad%20key",
            "https://drive.google.com/open?id=",
            "https://drive.google.com/drive/u/x/folders/abc",
            "https://www.dropbox.com/s/abc/photo.jpg?dl=0",
            "https://www.dropbox.com/scl/fi/abc/photo.jpg?rlkey=k&dl=0",
            "https://www.dropbox.com/scl/fo/abc/def",
            "https://www.dropbox.com/scl/fo/abc/def?rlkey=",
            "https://www.dropbox.com/scl/fo/abc/def/ghi?rlkey=k",
            "https://www.dropbox.com/home/Photos",
            "https://www.dropbox.com/sh/onlyid",
            "https://dl.dropboxusercontent.com/s/abc/photo.jpg",
            "https://www.dropbox.com.evil.example/sh/a/b",
        ];
        for url in cases {
            let err = parse(url).expect_err(url);
            assert_eq!(err.code(), "invalid-folder-url");
            assert!(!err.to_string().is_empty(), "{url}");
        }
        let long = format!(
            "https://drive.google.com/drive/folders/{}",
            "a".repeat(MAX_URL_LEN)
        );
        assert!(parse(&long).is_err());
    }

    #[test]
    fn the_wrong_provider_for_the_endpoint_is_refused() {
        let dropbox_link = "https://www.dropbox.com/sh/a1b2c3d4e5/AAB_cd";
        let err = parse_for(Provider::GoogleDrive, dropbox_link).unwrap_err();
        assert!(err.to_string().contains("Dropbox"), "{err}");
        let drive_link = format!("https://drive.google.com/drive/folders/{ID}");
        let err = parse_for(Provider::Dropbox, &drive_link).unwrap_err();
        assert!(err.to_string().contains("Google Drive"), "{err}");
    }

    #[test]
    fn messages_never_echo_a_scripted_url() {
        let err = parse("javascript:alert(document.cookie)").unwrap_err();
        assert!(!err.to_string().contains("alert"), "{err}");
    }
}

//! `fields`: Drive's partial-response selector (`a,b(c,d),e/f,*`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::GoogleError;
use super::Params;

/// A parsed `fields` selection: `a,b(c,d),e/f,*`.
#[derive(Debug, Default, Clone)]
pub(super) struct Selection {
    all: bool,
    fields: BTreeMap<String, Selection>,
}

impl Selection {
    pub(super) fn parse(text: &str) -> Result<Selection, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut pos = 0;
        let mut sel = Selection::default();
        parse_list(&chars, &mut pos, &mut sel)?;
        if pos != chars.len() {
            return Err(text.to_owned());
        }
        Ok(sel)
    }

    /// Whether `path` (e.g. `["files", "md5Checksum"]`) is selected.
    pub(super) fn wants(&self, path: &[&str]) -> bool {
        if self.all {
            return true;
        }
        match path.split_first() {
            None => true,
            Some((first, rest)) => self.fields.get(*first).is_some_and(|s| s.wants(rest)),
        }
    }

    pub(super) fn apply(&self, value: &Value) -> Value {
        if self.all {
            return value.clone();
        }
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, sub) in &self.fields {
                    if let Some(v) = map.get(k) {
                        out.insert(k.clone(), sub.apply(v));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v)).collect()),
            other => other.clone(),
        }
    }

    /// The first field not in `allowed` (one level, `*` allowed).
    fn unknown(&self, allowed: &[&str]) -> Option<String> {
        self.fields
            .keys()
            .find(|k| !allowed.contains(&k.as_str()))
            .cloned()
    }
}

fn parse_list(chars: &[char], pos: &mut usize, into: &mut Selection) -> Result<(), String> {
    loop {
        parse_item(chars, pos, into)?;
        if *pos < chars.len() && chars[*pos] == ',' {
            *pos += 1;
            continue;
        }
        return Ok(());
    }
}

fn parse_item(chars: &[char], pos: &mut usize, into: &mut Selection) -> Result<(), String> {
    let start = *pos;
    while *pos < chars.len() && !matches!(chars[*pos], ',' | '(' | ')' | '/') {
        *pos += 1;
    }
    let name: String = chars[start..*pos]
        .iter()
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() {
        return Err(chars[start..].iter().collect());
    }
    if name == "*" {
        into.all = true;
        return Ok(());
    }
    let child = into.fields.entry(name).or_default();
    match chars.get(*pos) {
        Some('/') => {
            *pos += 1;
            parse_item(chars, pos, child)
        }
        Some('(') => {
            *pos += 1;
            parse_list(chars, pos, child)?;
            if chars.get(*pos) != Some(&')') {
                return Err(chars[start..].iter().collect());
            }
            *pos += 1;
            Ok(())
        }
        _ => {
            child.all = true;
            Ok(())
        }
    }
}

/// Every field of the File resource; those not emulated are accepted and absent.
const FILE_FIELDS: &[&str] = &[
    "*",
    "kind",
    "id",
    "name",
    "mimeType",
    "parents",
    "size",
    "md5Checksum",
    "sha1Checksum",
    "sha256Checksum",
    "modifiedTime",
    "createdTime",
    "trashed",
    "explicitlyTrashed",
    "resourceKey",
    "shortcutDetails",
    "fileExtension",
    "fullFileExtension",
    "originalFilename",
    "imageMediaMetadata",
    "webContentLink",
    "webViewLink",
    "iconLink",
    "thumbnailLink",
    "hasThumbnail",
    "headRevisionId",
    "driveId",
    "starred",
    "description",
    "capabilities",
    "owners",
    "quotaBytesUsed",
    "version",
    "viewedByMeTime",
    "spaces",
    "copyRequiresWriterPermission",
    "writersCanShare",
    "ownedByMe",
    "shared",
    "contentHints",
    "exportLinks",
    "linkShareMetadata",
    "properties",
    "appProperties",
    "folderColorRgb",
    "isAppAuthorized",
    "permissions",
    "permissionIds",
    "lastModifyingUser",
    "sharingUser",
    "modifiedByMeTime",
    "modifiedByMe",
    "viewersCanCopyContent",
    "videoMediaMetadata",
    "labelInfo",
    "sharedWithMeTime",
    "teamDriveId",
    "hasAugmentedPermissions",
    "trashingUser",
    "trashedTime",
    "inheritedPermissionsDisabled",
    "downloadRestrictions",
    "thumbnailVersion",
];
const LIST_FIELDS: &[&str] = &["*", "kind", "nextPageToken", "incompleteSearch", "files"];
pub(super) const DEFAULT_FILE: &str = "kind,id,name,mimeType";
pub(super) const DEFAULT_LIST: &str =
    "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)";

fn bad_fields(field: &str) -> GoogleError {
    GoogleError::new(
        StatusCode::BAD_REQUEST,
        "invalidParameter",
        format!("Invalid field selection {field}"),
    )
    .at("fields")
}

pub(super) fn selection(
    params: &Params,
    default: &str,
    list: bool,
) -> Result<Selection, GoogleError> {
    let text = params.get("fields").map_or(default, String::as_str);
    let sel = Selection::parse(text).map_err(|bad| bad_fields(&bad))?;
    if list {
        if let Some(bad) = sel.unknown(LIST_FIELDS) {
            return Err(bad_fields(&bad));
        }
        if let Some(bad) = sel.fields.get("files").and_then(|f| f.unknown(FILE_FIELDS)) {
            return Err(bad_fields(&bad));
        }
    } else if let Some(bad) = sel.unknown(FILE_FIELDS) {
        return Err(bad_fields(&bad));
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_parse_and_apply() {
        let sel =
            Selection::parse("nextPageToken,files(id,name,shortcutDetails/targetId)").unwrap();
        assert!(sel.wants(&["files", "id"]));
        assert!(!sel.wants(&["files", "size"]));
        assert!(sel.wants(&["files", "shortcutDetails", "targetId"]));
        let doc = json!({"kind": "x", "files": [{"id": "1", "name": "a", "size": "3",
            "shortcutDetails": {"targetId": "t", "targetMimeType": "m"}}]});
        assert_eq!(
            sel.apply(&doc),
            json!({"files": [{"id": "1", "name": "a", "shortcutDetails": {"targetId": "t"}}]})
        );
        assert!(Selection::parse("files(id").is_err());
        assert!(Selection::parse("a,,b").is_err());
        assert!(Selection::parse("*").unwrap().all);
    }
}

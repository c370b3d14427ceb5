//! The emulated files: folder specifications (generated or a local directory),
//! the node arena they become, stable ids, and cached digests.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

use crate::content::{mix, Content, Digests, ImageKind};

pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
pub const SHORTCUT_MIME: &str = "application/vnd.google-apps.shortcut";
pub const DOCUMENT_MIME: &str = "application/vnd.google-apps.document";
/// Size of a generated broken file.
const BROKEN_LEN: usize = 8 * 1024;

/// Where a folder's contents come from.
#[derive(Debug, Clone)]
pub enum Source {
    Generated(Generate),
    Directory(PathBuf),
}

/// One shared folder to emulate, for Drive or Dropbox.
#[derive(Debug, Clone)]
pub struct Folder {
    pub(crate) source: Source,
    pub(crate) name: Option<String>,
    pub(crate) resource_key: bool,
    pub(crate) private: bool,
}

impl Folder {
    /// A folder made by the generator.
    pub fn generated(generate: Generate) -> Self {
        Folder {
            source: Source::Generated(generate),
            name: None,
            resource_key: false,
            private: false,
        }
    }

    /// A folder mirroring a local directory tree (walked once, at build time;
    /// bytes are read from disk on each download). Dotfiles and symlinks are skipped.
    pub fn directory(path: impl Into<PathBuf>) -> Self {
        Folder {
            source: Source::Directory(path.into()),
            name: None,
            resource_key: false,
            private: false,
        }
    }

    /// The folder's own name (default: the directory's name, or "Generated images").
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Drive only: the folder needs a resource key (`X-Goog-Drive-Resource-Keys:
    /// ID/KEY`); without it the folder is `404 notFound`. The key is part of the
    /// folder URL (`?resourcekey=…`).
    pub fn with_resource_key(mut self) -> Self {
        self.resource_key = true;
        self
    }

    /// The folder is not shared: Drive answers `404 notFound` for it and its
    /// listing, Dropbox `409 shared_link_not_found`.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }
}

/// What the generator makes: `count` images (PNG/JPEG in turn, deterministic
/// from `seed`), spread over the root and `subfolders` folders (every second
/// subfolder is nested in the previous one; with [`Generate::depth`], a full
/// tree instead), plus optional extras.
#[derive(Debug, Clone)]
pub struct Generate {
    pub count: usize,
    pub size_min: usize,
    pub size_max: usize,
    pub types: Vec<ImageKind>,
    pub subfolders: usize,
    /// `Some(d)`: the subfolders form a tree `d` levels deep (`subfolders`
    /// folders in the root, `subfolders` in each of those, …). `None`: the
    /// classic layout (`subfolders` folders, every second one nested in the
    /// previous one).
    pub depth: Option<usize>,
    /// Drive only: Google Docs (no size, not downloadable).
    pub docs: usize,
    /// Drive only: shortcuts, each to an extra image that lives outside the folder.
    pub shortcuts: usize,
    /// PDFs (a non-image with real bytes).
    pub non_images: usize,
    /// Broken files: named and typed as JPEG images (`broken-001.jpg`,
    /// `image/jpeg`) whose bytes are not an image. Their sizes and checksums
    /// match their bytes: only an image check rejects them.
    pub broken: usize,
    pub seed: u64,
}

impl Generate {
    /// `count` images of 50 KiB, PNG and JPEG alternating, no subfolders, seed 1.
    pub fn images(count: usize) -> Self {
        Generate {
            count,
            size_min: 50 * 1024,
            size_max: 50 * 1024,
            types: vec![ImageKind::Png, ImageKind::Jpeg],
            subfolders: 0,
            depth: None,
            docs: 0,
            shortcuts: 0,
            non_images: 0,
            broken: 0,
            seed: 1,
        }
    }

    /// Every image about `bytes` long (PNG exactly; JPEG at least that and up
    /// to ~4 KiB more, as the synthetic JPEG grows in 4 KiB blocks).
    pub fn size(mut self, bytes: usize) -> Self {
        self.size_min = bytes;
        self.size_max = bytes;
        self
    }

    /// Sizes drawn deterministically from `min..=max`.
    pub fn size_range(mut self, min: usize, max: usize) -> Self {
        self.size_min = min.min(max);
        self.size_max = max.max(min);
        self
    }

    /// The formats to use, in turn (empty → PNG).
    pub fn types(mut self, types: &[ImageKind]) -> Self {
        self.types = types.to_vec();
        self
    }

    pub fn subfolders(mut self, n: usize) -> Self {
        self.subfolders = n;
        self
    }

    /// Nests the subfolders `levels` deep: `subfolders` folders in the root,
    /// `subfolders` in each of those, and so on (`subfolders(3).depth(2)`: 3 + 9
    /// folders). Images and extras are spread over the root and every folder.
    /// `depth(0)` is the same as no subfolders.
    pub fn depth(mut self, levels: usize) -> Self {
        self.depth = Some(levels);
        self
    }

    pub fn docs(mut self, n: usize) -> Self {
        self.docs = n;
        self
    }

    pub fn shortcuts(mut self, n: usize) -> Self {
        self.shortcuts = n;
        self
    }

    pub fn non_images(mut self, n: usize) -> Self {
        self.non_images = n;
        self
    }

    /// Adds `n` broken files (see [`Generate::broken`](struct.Generate.html#structfield.broken)).
    pub fn broken(mut self, n: usize) -> Self {
        self.broken = n;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn image(&self, index: u64) -> (String, Content) {
        let kinds = if self.types.is_empty() {
            &[ImageKind::Png][..]
        } else {
            &self.types[..]
        };
        let kind = kinds[index as usize % kinds.len()];
        let r = mix(self.seed, index);
        let span = (self.size_max - self.size_min) as u64;
        let len = self.size_min
            + if span == 0 {
                0
            } else {
                (r % (span + 1)) as usize
            };
        let width = 640 + (r >> 20) % 1360;
        let height = 480 + (r >> 40) % 600;
        let name = format!("IMG_{index:05}.{}", kind.extension());
        let content = match kind {
            ImageKind::Png => Content::Png {
                seed: self.seed,
                index,
                width: width as u32,
                height: height as u32,
                len,
            },
            ImageKind::Jpeg => Content::Jpeg {
                seed: self.seed,
                index,
                width: width as u16,
                height: height as u16,
                len,
            },
        };
        (name, content)
    }
}

/// What a node is.
#[derive(Debug)]
pub enum Kind {
    Folder {
        children: Vec<usize>,
        resource_key: Option<String>,
        private: bool,
    },
    File {
        content: Content,
        mime: String,
    },
    GoogleDoc,
    Shortcut {
        target: usize,
    },
}

/// One file or folder.
#[derive(Debug)]
pub struct Node {
    pub drive_id: String,
    pub dropbox_id: String,
    pub name: String,
    pub parent: Option<usize>,
    /// Path from the shared folder's root, e.g. `/sub/IMG_00001.png` (`""` for the root).
    pub path: String,
    pub kind: Kind,
    pub modified: DateTime<Utc>,
    pub rev: String,
    /// Image dimensions when known (generated images).
    pub dimensions: Option<(u32, u32)>,
    /// Shared by every node with the same [`Content`] (a folder shared over
    /// both providers is hashed once).
    digests: Arc<OnceLock<Digests>>,
}

impl Node {
    pub fn mime(&self) -> &str {
        match &self.kind {
            Kind::Folder { .. } => FOLDER_MIME,
            Kind::File { mime, .. } => mime,
            Kind::GoogleDoc => DOCUMENT_MIME,
            Kind::Shortcut { .. } => SHORTCUT_MIME,
        }
    }

    pub fn content(&self) -> Option<&Content> {
        match &self.kind {
            Kind::File { content, .. } => Some(content),
            _ => None,
        }
    }

    pub fn is_folder(&self) -> bool {
        matches!(self.kind, Kind::Folder { .. })
    }

    /// Size and checksums of a file, computed on first use (blocking: generates
    /// or reads the whole file once) and cached. `None` for non-files.
    pub fn digests(&self) -> io::Result<Option<&Digests>> {
        let Some(content) = self.content() else {
            return Ok(None);
        };
        if let Some(d) = self.digests.get() {
            return Ok(Some(d));
        }
        let computed = content.digests()?;
        Ok(Some(self.digests.get_or_init(|| computed)))
    }

    /// The cached digests, if already computed.
    pub fn cached_digests(&self) -> Option<&Digests> {
        self.digests.get()
    }
}

/// A Drive folder the emulator shares.
#[derive(Debug, Clone)]
pub struct DriveFolder {
    pub root: usize,
    pub id: String,
    pub resource_key: Option<String>,
    /// The URL a seller would paste.
    pub url: String,
}

/// A Dropbox shared link the emulator serves.
#[derive(Debug, Clone)]
pub struct DropboxLink {
    pub root: usize,
    /// The `…/scl/fo/<link_id>/…` part.
    pub link_id: String,
    pub rlkey: String,
    /// The URL a seller would paste.
    pub url: String,
    pub private: bool,
}

/// Every emulated node, and how to find them.
#[derive(Debug, Default)]
pub struct Catalog {
    pub nodes: Vec<Node>,
    pub drive_folders: Vec<DriveFolder>,
    pub dropbox_links: Vec<DropboxLink>,
    drive_ids: HashMap<String, usize>,
    dropbox_ids: HashMap<String, usize>,
    /// (link index, lower-case path) → node.
    dropbox_paths: HashMap<(usize, String), usize>,
    digest_cells: HashMap<Content, Arc<OnceLock<Digests>>>,
}

/// A timestamp with second precision, deterministic per node.
fn timestamp(r: u64) -> DateTime<Utc> {
    // 2024-01-01T00:00:00Z plus up to ~a year.
    Utc.timestamp_opt(1_704_067_200 + (r % 31_536_000) as i64, 0)
        .single()
        .unwrap_or_default()
}

/// A stable id: `len` URL-safe characters of SHA-256(`scope` NUL `path`).
fn derive_id(scope: &str, path: &str, len: usize) -> String {
    let digest = Sha256::digest(format!("{scope}\0{path}").as_bytes());
    let mut text = URL_SAFE_NO_PAD.encode(digest);
    text.truncate(len);
    text
}

fn lowercase_alnum(scope: &str, path: &str, len: usize) -> String {
    let digest = Sha256::digest(format!("{scope}\0{path}").as_bytes());
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    digest
        .iter()
        .cycle()
        .take(len)
        .enumerate()
        .map(|(i, b)| ALPHABET[(usize::from(*b) + i * 7) % ALPHABET.len()] as char)
        .collect()
}

/// The MIME type Drive would report for a file name.
pub fn mime_for_name(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "jpeg" | "jpe") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("heic") => "image/heic",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

struct Builder<'a> {
    catalog: &'a mut Catalog,
    /// Scope of the ids: provider, ordinal, seed or directory.
    scope: String,
}

impl Builder<'_> {
    fn add(
        &mut self,
        parent: Option<usize>,
        name: String,
        kind: Kind,
        dimensions: Option<(u32, u32)>,
    ) -> usize {
        let path = match parent {
            Some(p) => format!("{}/{}", self.catalog.nodes[p].path, name),
            None if matches!(kind, Kind::Folder { .. }) => String::new(),
            None => format!("/{name}"),
        };
        let r = mix(
            u64::from_le_bytes(
                Sha256::digest(format!("{}\0{}", self.scope, path).as_bytes())[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            ),
            0,
        );
        // Drive ids are 33 characters; most start with "1".
        let drive_id = format!("1{}", derive_id(&self.scope, &path, 32));
        let dropbox_id = format!("id:{}", derive_id(&format!("dbx{}", self.scope), &path, 22));
        let digests = match &kind {
            Kind::File { content, .. } => self
                .catalog
                .digest_cells
                .entry(content.clone())
                .or_default()
                .clone(),
            _ => Arc::default(),
        };
        let index = self.catalog.nodes.len();
        self.catalog.nodes.push(Node {
            drive_id,
            dropbox_id,
            name,
            parent,
            path,
            kind,
            modified: timestamp(r),
            rev: format!("{:015x}", r >> 4),
            dimensions,
            digests,
        });
        if let Some(p) = parent {
            if let Kind::Folder { children, .. } = &mut self.catalog.nodes[p].kind {
                children.push(index);
            }
        }
        index
    }

    fn folder(&mut self, parent: Option<usize>, name: String) -> usize {
        self.add(
            parent,
            name,
            Kind::Folder {
                children: Vec::new(),
                resource_key: None,
                private: false,
            },
            None,
        )
    }

    fn generated(&mut self, root: usize, g: &Generate, drive: bool) {
        let mut folders = vec![root];
        match g.depth {
            None => {
                for k in 1..=g.subfolders {
                    let parent = if k % 2 == 0 { folders[k - 1] } else { root };
                    let f = self.folder(Some(parent), format!("Folder {k:02}"));
                    folders.push(f);
                }
            }
            Some(depth) => {
                // Level by level, so shallow folders come first.
                let mut level = vec![root];
                for _ in 0..depth {
                    let mut next = Vec::with_capacity(level.len() * g.subfolders);
                    for &parent in &level {
                        for k in 1..=g.subfolders {
                            next.push(self.folder(Some(parent), format!("Folder {k:02}")));
                        }
                    }
                    folders.extend_from_slice(&next);
                    level = next;
                }
            }
        }
        for i in 0..g.count {
            let (name, content) = g.image(i as u64);
            let dims = match &content {
                Content::Png { width, height, .. } => Some((*width, *height)),
                Content::Jpeg { width, height, .. } => {
                    Some((u32::from(*width), u32::from(*height)))
                }
                _ => None,
            };
            let mime = mime_for_name(&name).to_owned();
            let folder = folders[i % folders.len()];
            self.add(Some(folder), name, Kind::File { content, mime }, dims);
        }
        for k in 0..g.non_images {
            let content = Content::Pdf {
                seed: g.seed,
                index: (g.count + k) as u64,
                len: 4096,
            };
            let folder = folders[k % folders.len()];
            self.add(
                Some(folder),
                format!("document-{k:03}.pdf"),
                Kind::File {
                    content,
                    mime: "application/pdf".into(),
                },
                None,
            );
        }
        for k in 0..g.broken {
            let content = Content::Broken {
                seed: g.seed,
                index: (g.count + g.non_images + g.shortcuts + k) as u64,
                len: BROKEN_LEN,
            };
            // Deeper than the images' first folders, when there are subfolders.
            let folder = folders[folders.len() - 1 - k % folders.len()];
            self.add(
                Some(folder),
                format!("broken-{:03}.jpg", k + 1),
                Kind::File {
                    content,
                    mime: "image/jpeg".into(),
                },
                None,
            );
        }
        if !drive {
            return;
        }
        for k in 0..g.docs {
            self.add(Some(root), format!("Notes {k:02}"), Kind::GoogleDoc, None);
        }
        for k in 0..g.shortcuts {
            // The target lives outside the folder: reachable by id only.
            let (name, content) = g.image((g.count + g.non_images + k) as u64);
            let mime = mime_for_name(&name).to_owned();
            let target = self.add(None, name.clone(), Kind::File { content, mime }, None);
            self.add(
                Some(root),
                format!("Shortcut to {name}"),
                Kind::Shortcut { target },
                None,
            );
        }
    }

    fn directory(&mut self, parent: usize, dir: &Path) -> io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            if name.starts_with('.') || kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                let f = self.folder(Some(parent), name);
                self.directory(f, &entry.path())?;
            } else if kind.is_file() {
                let mime = mime_for_name(&name).to_owned();
                let content = Content::Disk { path: entry.path() };
                self.add(Some(parent), name, Kind::File { content, mime }, None);
            }
        }
        Ok(())
    }
}

impl Catalog {
    /// Adds one folder for Drive (`drive`) or Dropbox; returns its root node.
    pub fn add_folder(&mut self, spec: &Folder, drive: bool, ordinal: usize) -> io::Result<usize> {
        let provider = if drive { "drive" } else { "dropbox" };
        let (scope, default_name) = match &spec.source {
            Source::Generated(g) => (
                format!("{provider}:{ordinal}:gen:{}", g.seed),
                "Generated images".to_owned(),
            ),
            Source::Directory(dir) => (
                format!("{provider}:{ordinal}:dir"),
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "Folder".into()),
            ),
        };
        let first_new = self.nodes.len();
        let mut builder = Builder {
            catalog: self,
            scope: scope.clone(),
        };
        let root = builder.folder(None, spec.name.clone().unwrap_or(default_name));
        match &spec.source {
            Source::Generated(g) => builder.generated(root, g, drive),
            Source::Directory(dir) => builder.directory(root, dir)?,
        }
        let resource_key = (drive && spec.resource_key)
            .then(|| format!("0-{}", derive_id(&scope, "resourcekey", 22)));
        if let Kind::Folder {
            resource_key: rk,
            private,
            ..
        } = &mut self.nodes[root].kind
        {
            rk.clone_from(&resource_key);
            *private = spec.private;
        }
        if drive {
            for i in first_new..self.nodes.len() {
                self.drive_ids.insert(self.nodes[i].drive_id.clone(), i);
            }
            let id = self.nodes[root].drive_id.clone();
            let url = match &resource_key {
                Some(key) => format!(
                    "https://drive.google.com/drive/folders/{id}?resourcekey={key}&usp=sharing"
                ),
                None => format!("https://drive.google.com/drive/folders/{id}?usp=sharing"),
            };
            self.drive_folders.push(DriveFolder {
                root,
                id,
                resource_key,
                url,
            });
        } else {
            let link = self.dropbox_links.len();
            let link_id = lowercase_alnum(&scope, "link", 21);
            let rlkey = lowercase_alnum(&scope, "rlkey", 25);
            let url = format!("https://www.dropbox.com/scl/fo/{link_id}/h?rlkey={rlkey}&dl=0");
            for i in first_new..self.nodes.len() {
                if self.nodes[i].parent.is_none() && i != root {
                    continue;
                }
                self.dropbox_ids.insert(self.nodes[i].dropbox_id.clone(), i);
                self.dropbox_paths
                    .insert((link, self.nodes[i].path.to_lowercase()), i);
            }
            self.dropbox_links.push(DropboxLink {
                root,
                link_id,
                rlkey,
                url,
                private: spec.private,
            });
        }
        Ok(root)
    }

    pub fn drive_node(&self, id: &str) -> Option<usize> {
        self.drive_ids.get(id).copied()
    }

    pub fn dropbox_node(&self, link: usize, path: &str) -> Option<usize> {
        let path = path.trim_end_matches('/');
        self.dropbox_paths
            .get(&(link, path.to_lowercase()))
            .copied()
    }

    pub fn dropbox_node_by_id(&self, id: &str) -> Option<usize> {
        self.dropbox_ids.get(id).copied()
    }

    /// The Drive folder root that `node` lives under (itself for a root).
    pub fn drive_root_of(&self, mut node: usize) -> Option<&DriveFolder> {
        while let Some(p) = self.nodes[node].parent {
            node = p;
        }
        self.drive_folders.iter().find(|f| f.root == node)
    }

    /// Every file node (with content) reachable by Drive id or Dropbox path.
    pub fn file_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.content().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(g: Generate, drive: bool) -> (Catalog, usize) {
        let mut catalog = Catalog::default();
        let root = catalog
            .add_folder(&Folder::generated(g), drive, 0)
            .expect("generated folder");
        (catalog, root)
    }

    fn depth_of(catalog: &Catalog, mut node: usize) -> usize {
        let mut depth = 0;
        while let Some(p) = catalog.nodes[node].parent {
            node = p;
            depth += 1;
        }
        depth
    }

    #[test]
    fn classic_layout_is_the_default() {
        let (catalog, _) = catalog(Generate::images(12).subfolders(3), true);
        let folders: Vec<&str> = catalog
            .nodes
            .iter()
            .filter(|n| n.is_folder() && n.parent.is_some())
            .map(|n| n.path.as_str())
            .collect();
        assert_eq!(
            folders,
            ["/Folder 01", "/Folder 01/Folder 02", "/Folder 03"]
        );
    }

    #[test]
    fn depth_makes_a_tree_and_spreads_the_images_over_it() {
        let (catalog, _) = catalog(Generate::images(300).subfolders(3).depth(2), true);
        let folders: Vec<usize> = (0..catalog.nodes.len())
            .filter(|&i| catalog.nodes[i].is_folder() && catalog.nodes[i].parent.is_some())
            .collect();
        assert_eq!(folders.len(), 3 + 9);
        assert_eq!(
            folders
                .iter()
                .filter(|&&f| depth_of(&catalog, f) == 2)
                .count(),
            9
        );
        assert!(catalog
            .nodes
            .iter()
            .any(|n| n.path == "/Folder 03/Folder 02"));
        let images: Vec<usize> = (0..catalog.nodes.len())
            .filter(|&i| catalog.nodes[i].mime().starts_with("image/"))
            .collect();
        assert_eq!(images.len(), 300);
        // Every folder (root included) holds images; some are two levels down.
        for folder in folders.iter().copied().chain([0]) {
            assert!(
                images
                    .iter()
                    .any(|&i| catalog.nodes[i].parent == Some(folder)),
                "{}",
                catalog.nodes[folder].path
            );
        }
        assert!(images.iter().any(|&i| depth_of(&catalog, i) == 3));
        // Ids stay unique although names repeat across levels.
        let ids: std::collections::HashSet<&str> =
            catalog.nodes.iter().map(|n| n.drive_id.as_str()).collect();
        assert_eq!(ids.len(), catalog.nodes.len());
    }

    #[test]
    fn depth_zero_means_no_subfolders() {
        let (catalog, _) = catalog(Generate::images(5).subfolders(3).depth(0), true);
        assert_eq!(catalog.nodes.iter().filter(|n| n.is_folder()).count(), 1);
    }

    #[test]
    fn broken_files_claim_to_be_jpegs_with_honest_checksums() {
        for drive in [true, false] {
            let (catalog, _) = catalog(Generate::images(4).subfolders(2).depth(1).broken(2), drive);
            let broken: Vec<&Node> = catalog
                .nodes
                .iter()
                .filter(|n| n.name.starts_with("broken-"))
                .collect();
            let names: Vec<&str> = broken.iter().map(|n| n.name.as_str()).collect();
            assert_eq!(names, ["broken-001.jpg", "broken-002.jpg"]);
            for node in broken {
                assert_eq!(node.mime(), "image/jpeg");
                assert!(node.dimensions.is_none());
                let content = node.content().expect("a file");
                let bytes = content.bytes().unwrap();
                assert!(!bytes.starts_with(&[0xFF, 0xD8]), "not a JPEG");
                let d = node.digests().unwrap().expect("digests");
                assert_eq!(d.size, bytes.len() as u64);
                assert_eq!(d.sha256, hex::encode(Sha256::digest(&bytes)));
                assert_eq!(d.content_hash, crate::dropbox_content_hash(&bytes));
            }
        }
    }
}

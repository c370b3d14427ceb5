//! File contents: generated on demand from `(seed, index)` or read from disk.
//!
//! Nothing here keeps file bytes: a generated file is rebuilt (deterministically)
//! for every download, a directory file is read from disk, and only [`Digests`]
//! (size and checksums, ~100 bytes) are cached by the catalog.

use std::io::{self, Read};
use std::path::PathBuf;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use md5::Md5;
use service_kit::media::synthetic;
use sha2::{Digest, Sha256};

/// Dropbox hashes content in blocks of this size (see [`dropbox_content_hash`]).
pub const DROPBOX_BLOCK: usize = 4 * 1024 * 1024;
/// Buffer size when reading directory files.
const READ_CHUNK: usize = 256 * 1024;

/// The image formats the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Png,
    Jpeg,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpg",
        }
    }
}

/// Where a file's bytes come from. Equal values give equal bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// A structurally complete PNG (signature … `IEND`) carrying a `tEXt` chunk
    /// that names `(seed, index)`, so every file has its own bytes and checksums.
    Png {
        seed: u64,
        index: u64,
        width: u32,
        height: u32,
        len: usize,
    },
    /// A structurally complete baseline JPEG (`SOI` … `EOI`) with a `COM`
    /// segment naming `(seed, index)`; at least `len` bytes.
    Jpeg {
        seed: u64,
        index: u64,
        width: u16,
        height: u16,
        len: usize,
    },
    /// A small PDF-looking non-image (`%PDF-1.4` … `%%EOF`), exactly `len` bytes.
    Pdf { seed: u64, index: u64, len: usize },
    /// A file that claims to be an image (the catalog names and types it as
    /// one) but is not: a line of text, then noise. Exactly `len` bytes.
    Broken { seed: u64, index: u64, len: usize },
    /// A real file on disk.
    Disk { path: PathBuf },
}

/// Size and checksums of one file, computed once and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// Lower-case hex, as Drive's `md5Checksum`.
    pub md5: String,
    /// Lower-case hex, as Drive's `sha256Checksum`.
    pub sha256: String,
    /// Dropbox's `content_hash` (lower-case hex).
    pub content_hash: String,
}

impl Content {
    /// The exact size when it is known without generating or reading the file.
    pub fn known_size(&self) -> Option<u64> {
        match self {
            Content::Png {
                seed, index, len, ..
            } => {
                let text = png_text_chunk(*seed, *index).len();
                let rest = len.saturating_sub(text).max(synthetic::PNG_MIN_LEN);
                Some((rest + text) as u64)
            }
            Content::Pdf { len, .. } => Some(pdf_len(*len) as u64),
            Content::Broken { len, .. } => Some(*len as u64),
            Content::Jpeg { .. } | Content::Disk { .. } => None,
        }
    }

    /// The bytes as a blocking sequence of buffers (generation or file reads).
    pub fn chunks(&self) -> io::Result<Box<dyn Iterator<Item = io::Result<Bytes>> + Send>> {
        Ok(match self {
            Content::Png {
                seed,
                index,
                width,
                height,
                len,
            } => Box::new(png_chunks(*seed, *index, *width, *height, *len).map(Ok)),
            Content::Jpeg {
                seed,
                index,
                width,
                height,
                len,
            } => Box::new(std::iter::once(Ok(Bytes::from(jpeg_bytes(
                *seed, *index, *width, *height, *len,
            ))))),
            Content::Pdf { seed, index, len } => Box::new(std::iter::once(Ok(Bytes::from(
                pdf_bytes(*seed, *index, *len),
            )))),
            Content::Broken { seed, index, len } => Box::new(std::iter::once(Ok(Bytes::from(
                broken_bytes(*seed, *index, *len),
            )))),
            Content::Disk { path } => {
                let mut file = std::fs::File::open(path)?;
                Box::new(std::iter::from_fn(move || {
                    let mut buf = vec![0u8; READ_CHUNK];
                    match file.read(&mut buf) {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some(Ok(Bytes::from(buf)))
                        }
                        Err(e) => Some(Err(e)),
                    }
                }))
            }
        })
    }

    /// The whole file in memory (tests, small files).
    pub fn bytes(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in self.chunks()? {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Size and checksums, reading or generating the file once (blocking).
    pub fn digests(&self) -> io::Result<Digests> {
        let mut md5 = Md5::new();
        let mut sha = Sha256::new();
        // Within the first 4 MiB block, the block's SHA-256 state *is* the
        // whole file's: a block hasher is only needed past that point.
        let mut blocks: Option<DropboxHasher> = None;
        let mut size = 0u64;
        for chunk in self.chunks()? {
            let chunk = chunk?;
            md5.update(&chunk);
            match &mut blocks {
                Some(hasher) => {
                    sha.update(&chunk);
                    hasher.update(&chunk);
                }
                None => {
                    let room = DROPBOX_BLOCK as u64 - size;
                    if chunk.len() as u64 <= room {
                        sha.update(&chunk);
                    } else {
                        let (first, rest) = chunk.split_at(room as usize);
                        sha.update(first);
                        let mut hasher = DropboxHasher::default();
                        hasher.overall.update(sha.clone().finalize());
                        sha.update(rest);
                        hasher.update(rest);
                        blocks = Some(hasher);
                    }
                }
            }
            size += chunk.len() as u64;
        }
        let sha = sha.finalize();
        let content_hash = match blocks {
            Some(hasher) => hasher.finish(),
            None if size == 0 => hex::encode(Sha256::digest([])),
            None => hex::encode(Sha256::digest(sha)),
        };
        Ok(Digests {
            size,
            md5: hex::encode(md5.finalize()),
            sha256: hex::encode(sha),
            content_hash,
        })
    }

    /// Bytes `start..start + len` as an async stream. Generated content is built
    /// buffer by buffer as the stream is polled; disk files are read with tokio.
    pub async fn stream_range(
        &self,
        start: u64,
        len: u64,
    ) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        if let Content::Disk { path } = self {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut file = tokio::fs::File::open(path).await?;
            file.seek(io::SeekFrom::Start(start)).await?;
            let reader = file.take(len);
            return Ok(tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).boxed());
        }
        let chunks = self.chunks()?;
        Ok(stream::iter(slice_chunks(chunks, start, len)).boxed())
    }
}

/// Keeps bytes `start..start + len` of a sequence of buffers.
fn slice_chunks(
    chunks: Box<dyn Iterator<Item = io::Result<Bytes>> + Send>,
    start: u64,
    len: u64,
) -> impl Iterator<Item = io::Result<Bytes>> + Send {
    let mut offset = 0u64;
    let end = start.saturating_add(len);
    chunks
        .map_while(move |chunk| {
            if offset >= end {
                return None;
            }
            Some(chunk.map(|chunk| {
                let chunk_start = offset;
                offset += chunk.len() as u64;
                let from = start.saturating_sub(chunk_start).min(chunk.len() as u64) as usize;
                let to = (end - chunk_start).min(chunk.len() as u64) as usize;
                chunk.slice(from..to.max(from))
            }))
        })
        .filter(|chunk| chunk.as_ref().map_or(true, |c| !c.is_empty()))
}

/// Dropbox's `content_hash`: split the content into 4 MiB blocks, SHA-256 each
/// block, concatenate the binary digests, SHA-256 that, hex-encode.
/// <https://www.dropbox.com/developers/reference/content-hash>
pub fn dropbox_content_hash(data: &[u8]) -> String {
    let mut hasher = DropboxHasher::default();
    hasher.update(data);
    hasher.finish()
}

/// Incremental [`dropbox_content_hash`].
#[derive(Default)]
pub struct DropboxHasher {
    overall: Sha256,
    block: Sha256,
    block_len: usize,
}

impl DropboxHasher {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (DROPBOX_BLOCK - self.block_len).min(data.len());
            self.block.update(&data[..take]);
            self.block_len += take;
            data = &data[take..];
            if self.block_len == DROPBOX_BLOCK {
                let digest = std::mem::take(&mut self.block).finalize();
                self.overall.update(digest);
                self.block_len = 0;
            }
        }
    }

    pub fn finish(mut self) -> String {
        if self.block_len > 0 {
            self.overall.update(self.block.finalize());
        }
        hex::encode(self.overall.finalize())
    }
}

/// splitmix64: a deterministic mix of a seed and an index.
pub fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn marker(seed: u64, index: u64) -> String {
    format!("vitrine fake-providers seed={seed} index={index}")
}

/// A PNG `tEXt` chunk (`Comment`) naming the file, with its CRC.
fn png_text_chunk(seed: u64, index: u64) -> Vec<u8> {
    let mut body = b"tEXtComment\0".to_vec();
    body.extend_from_slice(marker(seed, index).as_bytes());
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&synthetic::crc32(&body).to_be_bytes());
    out
}

/// The PNG as buffers: the synthetic PNG with a `tEXt` chunk after `IHDR`.
fn png_chunks(
    seed: u64,
    index: u64,
    width: u32,
    height: u32,
    len: usize,
) -> impl Iterator<Item = Bytes> + Send {
    let text = png_text_chunk(seed, index);
    // Signature (8) + IHDR chunk (25).
    const HEAD: usize = 33;
    let rest = len.saturating_sub(text.len());
    let mut first = true;
    synthetic::png_stream(width, height, rest).map(move |part| {
        if !first {
            return Bytes::from(part);
        }
        first = false;
        let mut out = Vec::with_capacity(part.len() + text.len());
        out.extend_from_slice(&part[..HEAD]);
        out.extend_from_slice(&text);
        out.extend_from_slice(&part[HEAD..]);
        Bytes::from(out)
    })
}

fn jpeg_bytes(seed: u64, index: u64, width: u16, height: u16, len: usize) -> Vec<u8> {
    let comment = marker(seed, index);
    let segment_len = 2 + comment.len();
    let body = synthetic::jpeg(width, height, len.saturating_sub(segment_len + 2));
    let mut out = Vec::with_capacity(body.len() + segment_len + 2);
    out.extend_from_slice(&body[..2]); // SOI
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&(segment_len as u16).to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&body[2..]);
    out
}

const PDF_HEAD: &[u8] = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n";
const PDF_TAIL: &[u8] = b"\n%%EOF\n";

fn pdf_len(len: usize) -> usize {
    len.max(PDF_HEAD.len() + PDF_TAIL.len() + 64)
}

fn pdf_bytes(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let len = pdf_len(len);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(PDF_HEAD);
    let mut line = format!("% {}\n", marker(seed, index)).into_bytes();
    let filler_len = len - PDF_HEAD.len() - PDF_TAIL.len();
    while out.len() - PDF_HEAD.len() < filler_len {
        let room = filler_len - (out.len() - PDF_HEAD.len());
        line.truncate(line.len().min(room));
        out.extend_from_slice(&line);
    }
    out.extend_from_slice(PDF_TAIL);
    out
}

/// Not an image in any format: a text line (so no image signature can match)
/// and deterministic noise, exactly `len` bytes.
fn broken_bytes(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut out = format!("broken file, not an image: {}\n", marker(seed, index)).into_bytes();
    let noise = synthetic::random_bytes(mix(seed, index), len.saturating_sub(out.len()));
    out.extend_from_slice(&noise);
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_exact_size_text_chunk_and_iend() {
        let content = Content::Png {
            seed: 1,
            index: 2,
            width: 30,
            height: 20,
            len: 10_000,
        };
        let bytes = content.bytes().unwrap();
        assert_eq!(bytes.len() as u64, content.known_size().unwrap());
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&bytes[37..41], b"tEXt");
        assert!(bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn jpeg_starts_with_soi_and_ends_with_eoi() {
        let content = Content::Jpeg {
            seed: 1,
            index: 2,
            width: 30,
            height: 20,
            len: 10_000,
        };
        let bytes = content.bytes().unwrap();
        assert!(bytes.len() >= 10_000 - 64);
        assert_eq!(&bytes[..4], &[0xFF, 0xD8, 0xFF, 0xFE]);
        assert!(bytes.ends_with(&[0xFF, 0xD9]));
    }

    #[test]
    fn pdf_has_exact_size() {
        let content = Content::Pdf {
            seed: 3,
            index: 4,
            len: 5000,
        };
        let bytes = content.bytes().unwrap();
        assert_eq!(bytes.len(), 5000);
        assert!(bytes.starts_with(b"%PDF-1.4"));
        assert!(bytes.ends_with(b"%%EOF\n"));
    }

    #[test]
    fn broken_file_has_exact_size_no_image_signature_and_matching_digests() {
        let content = Content::Broken {
            seed: 1,
            index: 7,
            len: 8192,
        };
        let bytes = content.bytes().unwrap();
        assert_eq!(bytes.len() as u64, content.known_size().unwrap());
        assert!(bytes.starts_with(b"broken file, not an image"));
        assert!(!bytes.starts_with(&[0xFF, 0xD8]));
        assert!(!bytes.starts_with(b"\x89PNG"));
        let d = content.digests().unwrap();
        assert_eq!(d.size, 8192);
        assert_eq!(d.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(d.md5, hex::encode(Md5::digest(&bytes)));
        assert_eq!(d.content_hash, dropbox_content_hash(&bytes));
        // Deterministic, and different per index.
        assert_eq!(bytes, content.bytes().unwrap());
        let other = Content::Broken {
            seed: 1,
            index: 8,
            len: 8192,
        };
        assert_ne!(bytes, other.bytes().unwrap());
    }

    #[test]
    fn content_hash_of_empty_and_small_inputs() {
        // No blocks: SHA-256 of the empty string.
        assert_eq!(
            dropbox_content_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let one_block = hex::encode(Sha256::digest(Sha256::digest(b"abc")));
        assert_eq!(dropbox_content_hash(b"abc"), one_block);
    }

    #[test]
    fn digests_agree_with_the_reference_hashes_around_block_edges() {
        for len in [
            DROPBOX_BLOCK - 1,
            DROPBOX_BLOCK,
            DROPBOX_BLOCK + 1,
            2 * DROPBOX_BLOCK + 7,
        ] {
            let content = Content::Pdf {
                seed: 1,
                index: 1,
                len,
            };
            let bytes = content.bytes().unwrap();
            let d = content.digests().unwrap();
            assert_eq!(d.size, len as u64);
            assert_eq!(d.content_hash, dropbox_content_hash(&bytes), "{len}");
            assert_eq!(d.sha256, hex::encode(Sha256::digest(&bytes)));
        }
        let png = Content::Png {
            seed: 1,
            index: 1,
            width: 1,
            height: 1,
            len: 9 * 1024 * 1024 + 5,
        };
        let bytes = png.bytes().unwrap();
        assert_eq!(
            png.digests().unwrap().content_hash,
            dropbox_content_hash(&bytes)
        );
    }

    #[test]
    fn slicing_matches_the_whole() {
        let content = Content::Png {
            seed: 9,
            index: 1,
            width: 8,
            height: 8,
            len: 3 * 1024 * 1024,
        };
        let whole = content.bytes().unwrap();
        for (start, len) in [
            (0, 10),
            (5, 2_000_000),
            (1_048_570, 20),
            (3_145_000, 10_000),
        ] {
            let got: Vec<u8> = slice_chunks(content.chunks().unwrap(), start, len)
                .flat_map(|c| c.unwrap().to_vec())
                .collect();
            let end = (start + len).min(whole.len() as u64) as usize;
            assert_eq!(got, whole[start as usize..end], "{start}+{len}");
        }
    }
}

//! Streaming image inspection for the verified write path.
//!
//! Every upload or ingest body streams through an [`ImageInspector`] chunk by
//! chunk. It decides whether the bytes really are an image of the declared type,
//! whether the image is complete, and whether it fits the pixel cap, while
//! holding at most the first [`HEAD_LIMIT`] bytes plus a few bytes of parser
//! state — whatever the size of the body.
//!
//! # Layout
//! - `mod.rs` — [`ImageInspector`], [`ImageInfo`], [`InspectError`]: type
//!   sniffing (`infer`) and dimensions (`imagesize`) on the buffered head, and the
//!   order in which verdicts are given.
//! - `png.rs`, `jpeg.rs`, `gif.rs`, `webp.rs`, `isobmff.rs` — one streaming
//!   structure walker per format, deciding completeness ("truncated?") in O(1)
//!   memory.
//! - [`synthetic`] — dependency-free generators of structurally valid images
//!   (up to any size, streamed) for tests and benchmarks; re-exported from
//!   `service_kit::media::synthetic`, where it lives so that other crates
//!   (fake-providers) can use it.
//!
//! # Verdicts and their precedence
//! `update` fails as early as the bytes allow, so the caller can stop reading:
//! 1. **Type** — decided from magic bytes as soon as `infer` recognises one of
//!    the five accepted types, or after [`SNIFF_LIMIT`] bytes, or at `finish` for
//!    a shorter body: another accepted type → [`InspectError::TypeMismatch`],
//!    anything else → [`InspectError::NotAnImage`].
//! 2. **Pixel cap** — as soon as the head holds the dimensions:
//!    [`InspectError::TooManyPixels`]. It wins over everything below, so a pixel
//!    bomb's header alone is refused as such, truncated or not.
//! 3. **Damage** — a structure that cannot be followed (bad chunk/segment/box
//!    header, dimensions that cannot be parsed from a complete header) →
//!    [`InspectError::HeaderUnreadable`].
//!
//! `finish` then gives, in this order: [`InspectError::Empty`] for no bytes; the
//! checks above; [`InspectError::Truncated`] if the structure walker did not
//! reach the end of the image; [`InspectError::HeaderUnreadable`] if the
//! structure is complete but no dimensions were found. So a body cut inside its
//! header is `Truncated` (the header may be fine, the body is short), including
//! a body too short to show its whole signature when what is there matches the
//! declared type's signature.
//!
//! When a body has several defects, which one is reported can depend on where
//! the chunk boundaries fall; a valid or singly-defective body gets the same
//! verdict however it is chunked.

mod gif;
mod isobmff;
mod jpeg;
mod png;
pub use service_kit::media::synthetic;
#[cfg(test)]
mod tests;
mod webp;

use service_kit::media::ImageType;

/// How many leading bytes are kept for type sniffing and header parsing.
pub const HEAD_LIMIT: usize = 64 * 1024;
/// By this many bytes the type is decided even if nothing was recognised.
pub const SNIFF_LIMIT: usize = 4096;

/// What the inspector learned about an accepted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    pub image_type: ImageType,
    pub width: u32,
    pub height: u32,
}

/// Why a body was refused. [`InspectError::code`] gives the stable slug.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum InspectError {
    /// The bytes are not one of the accepted image types.
    #[error(
        "the file is not an accepted image ({}); accepted types: {}",
        match .detected {
            Some(mime) => format!("its content looks like {mime}"),
            None => "its content matches no known image format".to_owned(),
        },
        ImageType::accepted_list()
    )]
    NotAnImage {
        /// What `infer` recognised instead, e.g. `text/html`, if anything.
        detected: Option<String>,
    },
    /// The bytes are an accepted image type, but not the declared one.
    #[error("the file is {} image but was declared as {declared}", with_article(*.detected))]
    TypeMismatch {
        declared: ImageType,
        detected: ImageType,
    },
    /// The header or structure cannot be parsed, or gives no usable size.
    #[error(
        "the image header could not be read: the file is damaged or is not a valid image of its type"
    )]
    HeaderUnreadable,
    /// `width × height` is over the cap.
    #[error(
        "the image is {width}×{height} = {}; the limit is {}",
        pixel_count(u64::from(*.width) * u64::from(*.height)),
        pixel_count(*.max_pixels)
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// The body ends before the end of the image.
    #[error("the image is incomplete: the data ends before the end of the image (was the upload cut short?)")]
    Truncated,
    /// No bytes at all.
    #[error("the body is empty; an image was expected")]
    Empty,
}

impl InspectError {
    /// Stable, machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            InspectError::NotAnImage { .. } => "not-an-image",
            InspectError::TypeMismatch { .. } => "content-type-mismatch",
            InspectError::HeaderUnreadable => "image-header-unreadable",
            InspectError::TooManyPixels { .. } => "image-too-many-pixels",
            InspectError::Truncated => "image-truncated",
            InspectError::Empty => "empty-body",
        }
    }
}

/// "a PNG", "an AVIF", … for messages.
fn with_article(image_type: ImageType) -> &'static str {
    match image_type {
        ImageType::Jpeg => "a JPEG",
        ImageType::Png => "a PNG",
        ImageType::Webp => "a WebP",
        ImageType::Gif => "a GIF",
        ImageType::Avif => "an AVIF",
    }
}

/// 3_600_000_000 → "3.6 gigapixels", 100_000_000 → "100 megapixels".
fn pixel_count(pixels: u64) -> String {
    let scaled = |unit: f64, name: &str| {
        let text = format!("{:.1}", pixels as f64 / unit);
        let text = text.strip_suffix(".0").unwrap_or(&text);
        format!("{text} {name}")
    };
    if pixels >= 1_000_000_000 {
        scaled(1e9, "gigapixels")
    } else if pixels >= 1_000_000 {
        scaled(1e6, "megapixels")
    } else {
        format!("{pixels} pixels")
    }
}

/// A structure walker met bytes that cannot belong to a valid file.
struct Damaged;

/// The completeness checker for the declared type.
enum Walker {
    Png(png::PngWalker),
    Jpeg(jpeg::JpegWalker),
    Gif(gif::GifWalker),
    Webp(webp::WebpWalker),
    Avif(isobmff::BoxWalker),
}

impl Walker {
    fn new(image_type: ImageType) -> Self {
        match image_type {
            ImageType::Png => Walker::Png(png::PngWalker::new()),
            ImageType::Jpeg => Walker::Jpeg(jpeg::JpegWalker::new()),
            ImageType::Gif => Walker::Gif(gif::GifWalker::new()),
            ImageType::Webp => Walker::Webp(webp::WebpWalker::new()),
            ImageType::Avif => Walker::Avif(isobmff::BoxWalker::new()),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), Damaged> {
        match self {
            Walker::Png(w) => w.feed(data),
            Walker::Jpeg(w) => w.feed(data),
            Walker::Gif(w) => w.feed(data),
            Walker::Webp(w) => w.feed(data),
            Walker::Avif(w) => w.feed(data),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            Walker::Png(w) => w.is_complete(),
            Walker::Jpeg(w) => w.is_complete(),
            Walker::Gif(w) => w.is_complete(),
            Walker::Webp(w) => w.is_complete(),
            Walker::Avif(w) => w.is_complete(),
        }
    }
}

/// Checks a streamed body against its declared image type. Feed every chunk to
/// [`update`](Self::update), then call [`finish`](Self::finish). Once a call has
/// failed, every later call returns the same error.
pub struct ImageInspector {
    declared: ImageType,
    max_pixels: u64,
    total: u64,
    /// The first bytes of the body, at most [`HEAD_LIMIT`].
    head: Vec<u8>,
    /// `None` while the type is undecided; then every byte is still in `head`.
    walker: Option<Walker>,
    dims: Option<(u32, u32)>,
    /// `imagesize` gave up on a JPEG head; its size comes from the walker's SOF.
    jpeg_dims_from_frame: bool,
    /// Retry thresholds, growing geometrically so that a body dripped in tiny
    /// chunks costs O(log n) parses of the head rather than one per chunk.
    next_sniff_at: usize,
    next_dims_at: usize,
    failed: Option<InspectError>,
}

impl ImageInspector {
    pub fn new(declared: ImageType, max_pixels: u64) -> Self {
        ImageInspector {
            declared,
            max_pixels,
            total: 0,
            head: Vec::new(),
            walker: None,
            dims: None,
            jpeg_dims_from_frame: false,
            next_sniff_at: 0,
            next_dims_at: 0,
            failed: None,
        }
    }

    /// Bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.total
    }

    /// Feed the next chunk. May fail early (as soon as the first bytes reveal a
    /// wrong type, a non-image, damage, or dimensions over the cap) so the caller
    /// can stop reading.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), InspectError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.update_inner(chunk);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// All bytes were fed. Decides completeness and returns what was learned.
    pub fn finish(mut self) -> Result<ImageInfo, InspectError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        if self.total == 0 {
            return Err(InspectError::Empty);
        }
        let mut damage = Ok(());
        if self.walker.is_none() {
            self.sniff(true)?;
            // The type was undecided, so the whole body is in `head`.
            let mut walker = Walker::new(self.declared);
            damage = walker.feed(&self.head);
            self.walker = Some(walker);
        }
        self.check_dims(true)?;
        damage.map_err(|Damaged| InspectError::HeaderUnreadable)?;
        if !self.walker.as_ref().is_some_and(Walker::is_complete) {
            return Err(InspectError::Truncated);
        }
        let (width, height) = self.dims.ok_or(InspectError::HeaderUnreadable)?;
        Ok(ImageInfo {
            image_type: self.declared,
            width,
            height,
        })
    }

    fn update_inner(&mut self, chunk: &[u8]) -> Result<(), InspectError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let earlier = self.head.len();
        self.total += chunk.len() as u64;
        let keep = (HEAD_LIMIT - earlier).min(chunk.len());
        self.head.extend_from_slice(&chunk[..keep]);

        let damage = match &mut self.walker {
            Some(walker) => walker.feed(chunk),
            None => {
                if !self.sniff(false)? {
                    return Ok(());
                }
                // Until now every byte went to `head` only: replay it.
                let mut walker = Walker::new(self.declared);
                let result = walker
                    .feed(&self.head[..earlier])
                    .and_then(|()| walker.feed(chunk));
                self.walker = Some(walker);
                result
            }
        };
        // Dimensions before damage: a pixel bomb is reported as one.
        self.check_dims(false)?;
        damage.map_err(|Damaged| InspectError::HeaderUnreadable)
    }

    /// Decides the type from the head. `Ok(false)`: not yet, wait for more bytes.
    fn sniff(&mut self, at_end: bool) -> Result<bool, InspectError> {
        let len = self.head.len();
        let final_try = at_end || len >= SNIFF_LIMIT;
        if !final_try && len < self.next_sniff_at {
            return Ok(false);
        }
        let kind = infer::get(&self.head);
        match kind.and_then(|k| ImageType::from_mime(k.mime_type())) {
            Some(detected) if detected == self.declared => Ok(true),
            Some(detected) => Err(InspectError::TypeMismatch {
                declared: self.declared,
                detected,
            }),
            None if !final_try => {
                self.next_sniff_at = len + len.max(16);
                Ok(false)
            }
            None if kind.is_none() && is_signature_prefix(self.declared, &self.head) => {
                Err(InspectError::Truncated)
            }
            None => Err(InspectError::NotAnImage {
                detected: kind.map(|k| k.mime_type().to_owned()),
            }),
        }
    }

    /// Reads the dimensions once the head holds them and applies the pixel cap.
    fn check_dims(&mut self, at_end: bool) -> Result<(), InspectError> {
        if self.dims.is_none() && !self.jpeg_dims_from_frame {
            match self.head_dims(at_end) {
                HeadDims::Found(width, height) => self.accept_dims(width, height)?,
                HeadDims::NeedMore => {}
                HeadDims::Failed if self.declared == ImageType::Jpeg => {
                    self.jpeg_dims_from_frame = true;
                }
                HeadDims::Failed => return Err(InspectError::HeaderUnreadable),
            }
        }
        // JPEG: the walker's SOF is authoritative. It is read wherever it sits
        // (even beyond the head), the cap is applied to it as soon as it is known,
        // and it must agree with `imagesize`, so a crafted file whose segments
        // `imagesize` reads differently (a small fake SOF) cannot slip past the cap.
        let jpeg = match &self.walker {
            Some(Walker::Jpeg(jpeg)) => Some((jpeg.frame(), jpeg.past_header())),
            _ => None,
        };
        if let Some((frame, past_header)) = jpeg {
            if let Some((width, height)) = frame {
                self.check_cap(width, height)?;
            }
            match (frame, self.dims) {
                (Some(frame), Some(dims)) if frame != dims => {
                    return Err(InspectError::HeaderUnreadable)
                }
                (Some((width, height)), None) if self.jpeg_dims_from_frame || at_end => {
                    self.accept_dims(width, height)?
                }
                // A scan (or the end) before any SOF: no size, or a phantom one.
                (None, _) if past_header => return Err(InspectError::HeaderUnreadable),
                _ => {}
            }
        }
        Ok(())
    }

    fn head_dims(&mut self, at_end: bool) -> HeadDims {
        let len = self.head.len();
        let head_full = len >= HEAD_LIMIT;
        let mut parse_len = len;
        if let Some(Walker::Avif(boxes)) = &self.walker {
            // `imagesize` takes the largest `ispe` it finds, so reading a partial
            // `meta` box could under-report the size: wait for the whole box. And
            // it may read on past `meta`, so show it nothing beyond.
            match boxes.meta_end() {
                Some(end) if end <= len as u64 => parse_len = end as usize,
                Some(end) if end > HEAD_LIMIT as u64 => return HeadDims::Failed,
                _ if head_full => return HeadDims::Failed,
                _ => return HeadDims::NeedMore,
            }
        }
        if !at_end && !head_full && len < self.next_dims_at {
            return HeadDims::NeedMore;
        }
        match imagesize::blob_size(&self.head[..parse_len]) {
            Ok(size) => match (u32::try_from(size.width), u32::try_from(size.height)) {
                (Ok(width), Ok(height)) => HeadDims::Found(width, height),
                _ => HeadDims::Failed,
            },
            Err(imagesize::ImageError::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof && !head_full =>
            {
                self.next_dims_at = len + (len / 2).max(8);
                HeadDims::NeedMore
            }
            Err(_) => HeadDims::Failed,
        }
    }

    fn accept_dims(&mut self, width: u32, height: u32) -> Result<(), InspectError> {
        if width == 0 || height == 0 {
            return Err(InspectError::HeaderUnreadable);
        }
        self.dims = Some((width, height));
        self.check_cap(width, height)
    }

    fn check_cap(&self, width: u32, height: u32) -> Result<(), InspectError> {
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(InspectError::TooManyPixels {
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

enum HeadDims {
    Found(u32, u32),
    NeedMore,
    Failed,
}

/// Whether a body too short for `infer` is the start of `declared`'s signature,
/// i.e. an image cut before its magic bytes were complete.
fn is_signature_prefix(declared: ImageType, head: &[u8]) -> bool {
    // `None` bytes may hold anything.
    let matches = |pattern: &[Option<u8>]| {
        head.len() < pattern.len()
            && head
                .iter()
                .zip(pattern)
                .all(|(byte, want)| want.is_none_or(|w| w == *byte))
    };
    let b = |s: &[u8]| s.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    match declared {
        ImageType::Jpeg => matches(&b(b"\xFF\xD8\xFF")),
        ImageType::Png => matches(&b(b"\x89PNG\r\n\x1a\n")),
        ImageType::Gif => matches(&b(b"GIF8")),
        ImageType::Webp => {
            let mut pattern = b(b"RIFF");
            pattern.extend([None; 4]);
            pattern.extend(b(b"WEBP"));
            matches(&pattern)
        }
        ImageType::Avif => {
            // `infer` wants the whole `ftyp` box before it says AVIF.
            let mut pattern = vec![None; 4];
            pattern.extend(b(b"ftyp"));
            let ftyp_len = head
                .get(..4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
            matches(&pattern)
                || (head.len() >= 8
                    && &head[4..8] == b"ftyp"
                    && ftyp_len.is_some_and(|n| head.len() < n))
        }
    }
}

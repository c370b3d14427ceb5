//! Synthetic images for tests and benchmarks, built without any dependency.
//!
//! The PNGs are *structurally* valid — signature, an `IHDR` with the requested
//! size, `IDAT` chunks, `IEND`, every CRC correct — but the `IDAT` payload is
//! pseudo-random bytes, not zlib data, so a decoder will refuse the pixels. That
//! is all the inspector (and a streaming upload path) looks at. Output is
//! deterministic: the same arguments always give the same bytes.

/// Data bytes per `IDAT` chunk (libpng writes 8 KiB, other encoders up to 64 KiB).
const IDAT_DATA_LEN: usize = 32 * 1024;
/// Target size of each buffer yielded by [`png_stream`].
const STREAM_CHUNK: usize = 1024 * 1024;
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Signature (8) + IHDR (12 + 13) + IEND (12).
const FIXED_LEN: usize = 8 + 25 + 12;
/// The smallest file [`png`] makes: the fixed part plus one empty `IDAT`.
pub const PNG_MIN_LEN: usize = FIXED_LEN + 12;

/// A structurally valid PNG of `width`×`height` that is exactly
/// `max(total_len, PNG_MIN_LEN)` bytes long. Same bytes as [`png_stream`] joined.
pub fn png(width: u32, height: u32, total_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total_len.max(PNG_MIN_LEN));
    for part in png_stream(width, height, total_len) {
        out.extend_from_slice(&part);
    }
    out
}

/// Signature and `IHDR` only: what a pixel bomb needs to be recognised.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(SIGNATURE);
    push_chunk(&mut out, b"IHDR", &ihdr(width, height));
    out
}

/// [`png`] as a sequence of ~1 MiB buffers, so a body of any size (1 GiB…) can
/// be produced without holding it. The first buffer starts with the signature
/// and `IHDR`; the last ends with `IEND`.
pub fn png_stream(width: u32, height: u32, total_len: usize) -> impl Iterator<Item = Vec<u8>> {
    let total_len = total_len.max(PNG_MIN_LEN);
    // Split what lies between IHDR and IEND into k IDAT chunks of 12 + data bytes,
    // with the data spread evenly so every chunk stays within IDAT_DATA_LEN.
    let middle = total_len - FIXED_LEN;
    let chunks = middle.div_ceil(IDAT_DATA_LEN + 12).max(1);
    let data = middle - 12 * chunks;
    PngStream {
        width,
        height,
        chunks,
        base: data / chunks,
        extra: data % chunks,
        next_chunk: 0,
        rng: Rng::new(u64::from(width) << 32 | u64::from(height)),
        started: false,
        finished: false,
        scratch: Vec::new(),
    }
}

struct PngStream {
    width: u32,
    height: u32,
    chunks: usize,
    base: usize,
    extra: usize,
    next_chunk: usize,
    rng: Rng,
    started: bool,
    finished: bool,
    scratch: Vec<u8>,
}

impl Iterator for PngStream {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let mut out = Vec::with_capacity(STREAM_CHUNK + IDAT_DATA_LEN + 64);
        if !self.started {
            self.started = true;
            out.extend_from_slice(&png_header_only(self.width, self.height));
        }
        while out.len() < STREAM_CHUNK && self.next_chunk < self.chunks {
            let len = self.base + usize::from(self.next_chunk < self.extra);
            self.next_chunk += 1;
            self.scratch.resize(len, 0);
            self.rng.fill(&mut self.scratch);
            push_chunk(&mut out, b"IDAT", &self.scratch);
        }
        if self.next_chunk == self.chunks {
            push_chunk(&mut out, b"IEND", &[]);
            self.finished = true;
        }
        Some(out)
    }
}

/// A structurally valid baseline JPEG of `width`×`height` (`width`, `height` ≤
/// 65535), at least `total_len` bytes long: SOI, APP0/JFIF, DQT, SOF0, DHT, SOS,
/// pseudo-random entropy-coded data (every `FF` stuffed as `FF 00`, a restart
/// marker every 4 KiB), EOI. Not decodable, like [`png`].
pub fn jpeg(width: u16, height: u16, total_len: usize) -> Vec<u8> {
    let mut out = jpeg_header_only(width, height);
    // DHT: one DC table with a single 1-bit code.
    out.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01]);
    out.extend_from_slice(&[0; 15]);
    out.push(0x00);
    // SOS: three components, full spectral range.
    out.extend_from_slice(&[
        0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3F, 0x00,
    ]);
    let mut rng = Rng::new(u64::from(width) << 16 | u64::from(height));
    let mut block = vec![0u8; 4096];
    let mut restart = 0u8;
    while out.len() + 2 < total_len {
        rng.fill(&mut block);
        for &byte in &block {
            out.push(byte);
            if byte == 0xFF {
                out.push(0x00);
            }
        }
        out.extend_from_slice(&[0xFF, 0xD0 + restart]);
        restart = (restart + 1) % 8;
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// SOI, APP0/JFIF, DQT and a SOF0 announcing `width`×`height`; nothing after.
pub fn jpeg_header_only(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
    out.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
    out.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    out.extend_from_slice(&[1; 64]);
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&[0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00]);
    out
}

/// `len` deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    Rng::new(seed).fill(&mut out);
    out
}

/// CRC-32 (ISO-HDLC, as used by PNG and zlib).
pub fn crc32(data: &[u8]) -> u32 {
    !crc32_update(!0, data)
}

fn ihdr(width: u32, height: u32) -> [u8; 13] {
    let mut data = [0u8; 13];
    data[..4].copy_from_slice(&width.to_be_bytes());
    data[4..8].copy_from_slice(&height.to_be_bytes());
    // 8-bit RGB, deflate, adaptive filtering, no interlace.
    data[8..].copy_from_slice(&[8, 2, 0, 0, 0]);
    data
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunk longer than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = !crc32_update(crc32_update(!0, kind), data);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Slicing-by-16 tables, so that CRCs do not dominate generating a 1 GiB body.
const CRC_TABLES: [[u32; 256]; 16] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 16] {
    let mut tables = [[0u32; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut t = 1;
    while t < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
}

fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let lo = crc ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        crc = t[15][(lo & 0xFF) as usize]
            ^ t[14][((lo >> 8) & 0xFF) as usize]
            ^ t[13][((lo >> 16) & 0xFF) as usize]
            ^ t[12][(lo >> 24) as usize];
        for (k, &byte) in b[4..].iter().enumerate() {
            crc ^= t[11 - k][usize::from(byte)];
        }
    }
    for &byte in blocks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(byte)) & 0xFF) as usize];
    }
    crc
}

/// xorshift64*: tiny, deterministic, plenty random for filler bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

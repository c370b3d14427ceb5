//! WebP completeness from the RIFF header: `RIFF`, a little-endian size, `WEBP`.
//! The file is complete once `size + 8` bytes have arrived. An odd size whose pad
//! byte was omitted is accepted (decoders do); a present pad byte, like any other
//! byte after the RIFF chunk, is ignored.

use super::Damaged;

pub(super) struct WebpWalker {
    header: [u8; 12],
    filled: usize,
    seen: u64,
    riff_end: Option<u64>,
}

impl WebpWalker {
    pub(super) fn new() -> Self {
        WebpWalker {
            header: [0; 12],
            filled: 0,
            seen: 0,
            riff_end: None,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.riff_end.is_some_and(|end| self.seen >= end)
    }

    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(), Damaged> {
        self.seen += data.len() as u64;
        if self.filled < 12 {
            let n = (12 - self.filled).min(data.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            if self.filled == 12 {
                let h = &self.header;
                let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                if &h[..4] != b"RIFF" || &h[8..] != b"WEBP" || size < 4 {
                    return Err(Damaged);
                }
                self.riff_end = Some(u64::from(size) + 8);
            }
        }
        Ok(())
    }
}

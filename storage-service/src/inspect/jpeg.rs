//! JPEG completeness: walks the length-prefixed marker segments (so an APP1/EXIF
//! thumbnail, with its own `FF D9`, is skipped whole), then scans entropy-coded
//! data with `memchr` for the next marker. `FF 00` (stuffing), `FF D0..D7` (RST)
//! and `FF FF` (fill) are data; any other marker starts a segment (progressive
//! files have many SOS); `FF D9` (EOI) completes the image and whatever follows
//! is ignored (phones append trailers). Also records the first SOF's size, which
//! the inspector uses when the SOF sits beyond the 64 KiB head.

use super::Damaged;

const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
const SOI: u8 = 0xD8;

pub(super) struct JpegWalker {
    state: State,
    /// A SOS has been seen: stray bytes between segments are then treated as
    /// entropy data (as decoders do) rather than as damage.
    in_scan: bool,
    /// (width, height) from the first SOFn.
    frame: Option<(u32, u32)>,
}

enum State {
    Soi {
        matched: usize,
    },
    /// Expecting the `FF` of a marker.
    Marker,
    /// After an `FF` between segments.
    MarkerCode,
    Length {
        marker: u8,
        hi: Option<u8>,
    },
    Segment {
        marker: u8,
        remaining: usize,
        sof: Option<SofCapture>,
    },
    Entropy,
    /// After an `FF` inside entropy-coded data.
    EntropyFf,
    Done,
}

/// The first 5 payload bytes of a SOF: precision, height (u16), width (u16).
struct SofCapture {
    buf: [u8; 5],
    filled: usize,
}

fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF)
}

fn is_standalone(marker: u8) -> bool {
    matches!(marker, 0xD0..=0xD7 | 0x01)
}

impl JpegWalker {
    pub(super) fn new() -> Self {
        JpegWalker {
            state: State::Soi { matched: 0 },
            in_scan: false,
            frame: None,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// (width, height) of the first SOF, once it has been read.
    pub(super) fn frame(&self) -> Option<(u32, u32)> {
        self.frame
    }

    /// The first scan started, or the image ended: no SOF can come any more.
    pub(super) fn past_header(&self) -> bool {
        self.in_scan || self.is_complete()
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Damaged> {
        while !data.is_empty() {
            match &mut self.state {
                State::Soi { matched } => {
                    let expected = [0xFF, SOI];
                    let start = *matched;
                    let n = (2 - start).min(data.len());
                    if data[..n] != expected[start..start + n] {
                        return Err(Damaged);
                    }
                    data = &data[n..];
                    *matched += n;
                    if *matched == 2 {
                        self.state = State::Marker;
                    }
                }
                State::Marker => {
                    if data[0] == 0xFF {
                        data = &data[1..];
                        self.state = State::MarkerCode;
                    } else if self.in_scan {
                        self.state = State::Entropy;
                    } else {
                        return Err(Damaged);
                    }
                }
                State::MarkerCode => {
                    let code = data[0];
                    data = &data[1..];
                    self.state = match code {
                        0xFF => State::MarkerCode,
                        EOI => State::Done,
                        c if is_standalone(c) && !self.in_scan => State::Marker,
                        // Between scans, anything that is not a segment is data.
                        0x00 | SOI | 0xD0..=0xD7 | 0x01 if self.in_scan => State::Entropy,
                        0x00 | SOI => return Err(Damaged),
                        c => State::Length {
                            marker: c,
                            hi: None,
                        },
                    };
                }
                State::Length { marker, hi } => {
                    let byte = data[0];
                    data = &data[1..];
                    let Some(high) = *hi else {
                        *hi = Some(byte);
                        continue;
                    };
                    let marker = *marker;
                    let len = usize::from(u16::from_be_bytes([high, byte]));
                    if len < 2 {
                        return Err(Damaged);
                    }
                    let payload = len - 2;
                    let sof = if is_sof(marker) && self.frame.is_none() {
                        if payload < 5 {
                            return Err(Damaged);
                        }
                        Some(SofCapture {
                            buf: [0; 5],
                            filled: 0,
                        })
                    } else {
                        None
                    };
                    self.state = State::Segment {
                        marker,
                        remaining: payload,
                        sof,
                    };
                    if payload == 0 {
                        self.end_segment();
                    }
                }
                State::Segment { remaining, sof, .. } => {
                    let n = (*remaining).min(data.len());
                    if let Some(capture) = sof {
                        let k = (5 - capture.filled).min(n);
                        capture.buf[capture.filled..capture.filled + k].copy_from_slice(&data[..k]);
                        capture.filled += k;
                    }
                    *remaining -= n;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.end_segment();
                    }
                }
                State::Entropy => {
                    // Skip stuffed `FF 00` and RST markers in place; leave the
                    // loop only for a marker that matters or the end of `data`.
                    let mut from = 0;
                    loop {
                        // Dense stuffing (FF 00 FF 00 …) would cost a memchr call
                        // per two bytes: look at the next byte first.
                        let at = if data.get(from) == Some(&0xFF) {
                            from
                        } else if let Some(i) = memchr::memchr(0xFF, &data[from..]) {
                            from + i
                        } else {
                            data = &[];
                            break;
                        };
                        match data.get(at + 1) {
                            Some(&(0x00 | SOI | 0xD0..=0xD7 | 0x01)) => from = at + 2,
                            _ => {
                                data = &data[at + 1..];
                                self.state = State::EntropyFf;
                                break;
                            }
                        }
                    }
                }
                State::EntropyFf => {
                    let code = data[0];
                    data = &data[1..];
                    self.state = match code {
                        0xFF => State::EntropyFf,
                        EOI => State::Done,
                        0x00 | SOI | 0xD0..=0xD7 | 0x01 => State::Entropy,
                        c => State::Length {
                            marker: c,
                            hi: None,
                        },
                    };
                }
                State::Done => break,
            }
        }
        Ok(())
    }

    fn end_segment(&mut self) {
        let State::Segment { marker, sof, .. } = &self.state else {
            return;
        };
        if let Some(SofCapture { buf, .. }) = sof {
            let height = u32::from(u16::from_be_bytes([buf[1], buf[2]]));
            let width = u32::from(u16::from_be_bytes([buf[3], buf[4]]));
            self.frame = Some((width, height));
        }
        if *marker == SOS {
            self.in_scan = true;
            self.state = State::Entropy;
        } else {
            self.state = State::Marker;
        }
    }
}

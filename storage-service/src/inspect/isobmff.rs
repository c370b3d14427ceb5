//! AVIF (ISOBMFF) completeness: walks the top-level boxes (32-bit size; `1` means
//! a 64-bit size follows the type; `0` means "to the end of the file"). The file
//! is complete when it ends exactly on a box boundary (or inside a size-0 box)
//! *and* an `mdat` box was seen: a file cut right before its `mdat` would
//! otherwise end on a boundary and pass. Also records where the `meta` box ends,
//! so the inspector reads dimensions only once all of it is in the head.

use super::Damaged;

pub(super) struct BoxWalker {
    state: State,
    /// Bytes consumed so far.
    offset: u64,
    boxes: u64,
    meta_end: Option<u64>,
    mdat_seen: bool,
}

enum State {
    Header { buf: [u8; 16], filled: usize },
    Body { remaining: u64 },
    ToEnd,
}

impl BoxWalker {
    pub(super) fn new() -> Self {
        BoxWalker {
            state: State::Header {
                buf: [0; 16],
                filled: 0,
            },
            offset: 0,
            boxes: 0,
            meta_end: None,
            mdat_seen: false,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        let at_boundary = match self.state {
            State::Header { filled, .. } => filled == 0 && self.boxes > 0,
            State::Body { .. } => false,
            State::ToEnd => true,
        };
        at_boundary && self.mdat_seen
    }

    /// Offset just past the first top-level `meta` box, once its header was read.
    pub(super) fn meta_end(&self) -> Option<u64> {
        self.meta_end
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Damaged> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header { buf, filled } => {
                    let size32 = (*filled >= 4)
                        .then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                    let need = if *filled >= 8 && size32 == Some(1) {
                        16
                    } else {
                        8
                    };
                    let n = (need - *filled).min(data.len());
                    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    self.offset += n as u64;
                    data = &data[n..];
                    if *filled < 8 {
                        continue;
                    }
                    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    if size32 == 1 && *filled < 16 {
                        continue;
                    }
                    let kind = [buf[4], buf[5], buf[6], buf[7]];
                    let header_len = *filled as u64;
                    let start = self.offset - header_len;
                    if self.boxes == 0 && kind != *b"ftyp" {
                        return Err(Damaged);
                    }
                    self.boxes += 1;
                    if kind == *b"mdat" {
                        self.mdat_seen = true;
                    }
                    let size = match size32 {
                        0 => {
                            self.state = State::ToEnd;
                            continue;
                        }
                        1 => u64::from_be_bytes([
                            buf[8], buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15],
                        ]),
                        s => u64::from(s),
                    };
                    if size < header_len {
                        return Err(Damaged);
                    }
                    if kind == *b"meta" && self.meta_end.is_none() {
                        self.meta_end = Some(start.saturating_add(size));
                    }
                    self.state = State::Body {
                        remaining: size - header_len,
                    };
                    if size == header_len {
                        self.state = State::Header {
                            buf: [0; 16],
                            filled: 0,
                        };
                    }
                }
                State::Body { remaining } => {
                    let n = (*remaining).min(data.len() as u64);
                    *remaining -= n;
                    self.offset += n;
                    data = &data[n as usize..];
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 16],
                            filled: 0,
                        };
                    }
                }
                State::ToEnd => break,
            }
        }
        Ok(())
    }
}

//! GIF completeness: walks the block structure (header, logical screen, colour
//! tables, extensions and image descriptors with their data sub-blocks) up to the
//! `0x3B` trailer. Following the blocks rather than only looking at the last
//! byte means a file cut where a data byte happens to be `0x3B` is still caught.
//! Bytes after the trailer are ignored.

use super::Damaged;

pub(super) struct GifWalker {
    state: State,
}

enum State {
    /// 6-byte signature and 7-byte logical screen descriptor.
    Header {
        buf: [u8; 13],
        filled: usize,
    },
    /// A colour table; then a block introducer, or the LZW code size for a local table.
    ColorTable {
        remaining: usize,
        then_lzw: bool,
    },
    Block,
    ExtensionLabel,
    /// Image descriptor after the `0x2C` introducer: x, y, w, h (u16 each), flags.
    ImageDescriptor {
        buf: [u8; 9],
        filled: usize,
    },
    LzwMinCodeSize,
    SubBlockSize,
    SubBlockData {
        remaining: usize,
    },
    Done,
}

/// Size in bytes of a colour table announced by a packed flags byte, if any.
fn color_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 {
        0
    } else {
        3 << ((flags & 0x07) + 1)
    }
}

impl GifWalker {
    pub(super) fn new() -> Self {
        GifWalker {
            state: State::Header {
                buf: [0; 13],
                filled: 0,
            },
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Damaged> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header { buf, filled } => {
                    let n = (13 - *filled).min(data.len());
                    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    data = &data[n..];
                    if *filled < 13 {
                        continue;
                    }
                    if &buf[..6] != b"GIF87a" && &buf[..6] != b"GIF89a" {
                        return Err(Damaged);
                    }
                    self.state = table_then(color_table_len(buf[10]), false);
                }
                State::ColorTable {
                    remaining,
                    then_lzw,
                } => {
                    let n = (*remaining).min(data.len());
                    *remaining -= n;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.state = table_then(0, *then_lzw);
                    }
                }
                State::Block => {
                    let introducer = data[0];
                    data = &data[1..];
                    self.state = match introducer {
                        0x21 => State::ExtensionLabel,
                        0x2C => State::ImageDescriptor {
                            buf: [0; 9],
                            filled: 0,
                        },
                        0x3B => State::Done,
                        _ => return Err(Damaged),
                    };
                }
                State::ExtensionLabel | State::LzwMinCodeSize => {
                    data = &data[1..];
                    self.state = State::SubBlockSize;
                }
                State::ImageDescriptor { buf, filled } => {
                    let n = (9 - *filled).min(data.len());
                    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    data = &data[n..];
                    if *filled == 9 {
                        self.state = table_then(color_table_len(buf[8]), true);
                    }
                }
                State::SubBlockSize => {
                    let size = usize::from(data[0]);
                    data = &data[1..];
                    self.state = if size == 0 {
                        State::Block
                    } else {
                        State::SubBlockData { remaining: size }
                    };
                }
                State::SubBlockData { remaining } => {
                    let n = (*remaining).min(data.len());
                    *remaining -= n;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.state = State::SubBlockSize;
                    }
                }
                State::Done => break,
            }
        }
        Ok(())
    }
}

/// The state after a colour table of `len` bytes (possibly none).
fn table_then(len: usize, then_lzw: bool) -> State {
    if len > 0 {
        State::ColorTable {
            remaining: len,
            then_lzw,
        }
    } else if then_lzw {
        State::LzwMinCodeSize
    } else {
        State::Block
    }
}

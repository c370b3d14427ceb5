//! PNG completeness: walks the chunk sequence (length, type, data, CRC) without
//! buffering chunk data. Complete once the `IEND` chunk, CRC included, has been
//! read; bytes after it are ignored.

use super::Damaged;

const SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";
/// PNG limits a chunk length to 2^31 - 1.
const MAX_CHUNK_LEN: u32 = 0x7FFF_FFFF;

pub(super) struct PngWalker {
    state: State,
    chunks: u64,
}

enum State {
    Signature {
        matched: usize,
    },
    ChunkHeader {
        buf: [u8; 8],
        filled: usize,
    },
    /// Chunk data plus its 4-byte CRC.
    ChunkBody {
        remaining: u64,
        is_iend: bool,
    },
    Done,
}

impl PngWalker {
    pub(super) fn new() -> Self {
        PngWalker {
            state: State::Signature { matched: 0 },
            chunks: 0,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Damaged> {
        while !data.is_empty() {
            match &mut self.state {
                State::Signature { matched } => {
                    let start = *matched;
                    let n = (SIGNATURE.len() - start).min(data.len());
                    if data[..n] != SIGNATURE[start..start + n] {
                        return Err(Damaged);
                    }
                    data = &data[n..];
                    *matched += n;
                    if *matched == SIGNATURE.len() {
                        self.state = State::ChunkHeader {
                            buf: [0; 8],
                            filled: 0,
                        };
                    }
                }
                State::ChunkHeader { buf, filled } => {
                    let n = (8 - *filled).min(data.len());
                    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    data = &data[n..];
                    if *filled < 8 {
                        continue;
                    }
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let kind = [buf[4], buf[5], buf[6], buf[7]];
                    if len > MAX_CHUNK_LEN || !kind.iter().all(u8::is_ascii_alphabetic) {
                        return Err(Damaged);
                    }
                    if self.chunks == 0 && (kind != *b"IHDR" || len != 13) {
                        return Err(Damaged);
                    }
                    self.chunks += 1;
                    self.state = State::ChunkBody {
                        remaining: u64::from(len) + 4,
                        is_iend: kind == *b"IEND",
                    };
                }
                State::ChunkBody { remaining, is_iend } => {
                    let n = (*remaining).min(data.len() as u64);
                    *remaining -= n;
                    data = &data[n as usize..];
                    if *remaining == 0 {
                        self.state = if *is_iend {
                            State::Done
                        } else {
                            State::ChunkHeader {
                                buf: [0; 8],
                                filled: 0,
                            }
                        };
                    }
                }
                State::Done => break,
            }
        }
        Ok(())
    }
}

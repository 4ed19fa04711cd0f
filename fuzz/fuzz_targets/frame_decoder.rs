//! `FrameDecoder` fed a byte stream in chunks whose sizes the fuzzer chooses.
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 picks the maximum payload length (bit 7 set:
//! the default 1 MiB, otherwise 0..=127, so oversized frames are easy to reach); the rest is
//! the stream. Checked while decoding: every frame is within the maximum; `Ok(None)` leaves no
//! input unread; after an error every later call returns the same error and consumes nothing.
//! Checked at the end: bytes consumed = frames + their headers + bytes still buffered, and the
//! result equals both a one-shot decode of the whole stream and a plain reference parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::wire::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME_BYTES};

const HEADER: usize = 4;

fuzz_target!(|data: &[u8]| {
    let [seed, max_sel, stream @ ..] = data else { return };
    let max = if max_sel & 0x80 != 0 { DEFAULT_MAX_FRAME_BYTES } else { usize::from(*max_sel) };
    let chunked = run(max, stream, chunk_sizes(*seed));
    let one_shot = run(max, stream, || usize::MAX);
    assert_eq!(chunked, one_shot, "chunked and one-shot decoding differ");
    assert_eq!(chunked, reference(max, stream), "decoder differs from the reference parser");
});

/// What decoding a whole stream produced.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<FrameError>,
    /// Bytes held at the end: a partial frame, or the header of the rejected frame.
    buffered: usize,
}

/// Chunk sizes in `1..=limit`, the limit and the sequence both derived from `seed`.
fn chunk_sizes(seed: u8) -> impl FnMut() -> usize {
    let limit = [1, 2, 3, 5, 8, 17, 300, 4096][usize::from(seed & 7)];
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        1 + (state >> 8) as usize % limit
    }
}

fn run(max: usize, stream: &[u8], mut next_chunk: impl FnMut() -> usize) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    let mut out = Outcome::default();
    let mut consumed = 0;
    let mut rest = stream;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(next_chunk().clamp(1, rest.len()));
        rest = tail;
        let mut input = chunk;
        loop {
            let before = input.len();
            match dec.decode(&mut input) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame of {} bytes over max {max}", frame.len());
                    assert!(before - input.len() <= HEADER + frame.len(), "read past a frame");
                    out.frames.push(frame);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "Ok(None) with {} bytes unread", input.len());
                    break;
                }
                Err(e) => {
                    match out.error {
                        Some(first) => {
                            assert_eq!(e, first, "error changed");
                            assert_eq!(input.len(), before, "consumed input after an error");
                        }
                        None => assert!(
                            matches!(e, FrameError::TooLarge { len, max: m } if len > max && m == max),
                            "unexpected error {e:?} for max {max}"
                        ),
                    }
                    out.error = Some(e);
                    break;
                }
            }
        }
        consumed += chunk.len() - input.len();
    }
    if let Some(e) = out.error {
        for mut more in [&[][..], &[0, 0, 0, 0][..]] {
            let len = more.len();
            assert_eq!(dec.decode(&mut more), Err(e), "error not sticky");
            assert_eq!(more.len(), len, "consumed input after an error");
        }
    } else {
        assert_eq!(consumed, stream.len(), "input left unread without an error");
    }
    out.buffered = dec.buffered_bytes();
    assert_eq!(dec.is_mid_frame(), out.buffered > 0);
    let framed: usize = out.frames.iter().map(|f| HEADER + f.len()).sum();
    assert_eq!(consumed, framed + out.buffered, "consumed bytes do not add up");
    assert!(consumed <= stream.len());
    out
}

/// The framing rule written out directly: header, length check, payload, repeat.
fn reference(max: usize, stream: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut rest = stream;
    loop {
        let Some((header, body)) = rest.split_first_chunk::<HEADER>() else {
            out.buffered = rest.len();
            return out;
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > max {
            out.error = Some(FrameError::TooLarge { len, max });
            out.buffered = HEADER;
            return out;
        }
        if body.len() < len {
            out.buffered = rest.len();
            return out;
        }
        out.frames.push(body[..len].to_vec());
        rest = &body[len..];
    }
}

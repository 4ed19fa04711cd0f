//! Length-prefixed framing (proto-spec/framing.md).
//!
//! A frame is a 4-byte big-endian payload length followed by the payload. This layer knows
//! nothing of messages: it only finds frame boundaries and enforces the maximum length.
//!
//! Guarantees of [`FrameDecoder`]:
//! - input may arrive in chunks of any size, down to one byte;
//! - the length is checked against the maximum before a single payload byte is buffered, and
//!   the payload buffer grows only as bytes arrive, so a peer that announces 1 MiB and sends
//!   nothing costs nothing;
//! - errors are sticky: after one, every later call returns it and consumes nothing.

use std::borrow::Cow;
use std::fmt;

/// Length of the frame header.
pub const HEADER_BYTES: usize = 4;
/// Default maximum payload length: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Incremental decoder: bytes in, whole frame payloads out.
///
/// Driving contract: call [`FrameDecoder::decode`] with the unread input until it returns
/// `Ok(None)`; each `Ok(Some(frame))` is one complete payload.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
    header: [u8; HEADER_BYTES],
    header_len: usize,
    /// Payload length once the header is complete.
    expected: Option<usize>,
    payload: Vec<u8>,
    /// Frames returned so far: names the frame being assembled.
    frames_done: u64,
    error: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame_bytes,
            header: [0; HEADER_BYTES],
            header_len: 0,
            expected: None,
            payload: Vec::new(),
            frames_done: 0,
            error: None,
        }
    }

    /// Consumes bytes from the front of `input` until one frame is complete (returned) or
    /// `input` is empty (`Ok(None)`, partial state kept for the next call).
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(self.next_frame(input)?.map(Cow::into_owned))
    }

    /// Like [`FrameDecoder::decode`], but a frame that lies whole in `input` while no partial
    /// frame is held is borrowed from it instead of copied: the common case of a read that
    /// holds several small frames costs no allocation per frame.
    pub fn next_frame<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<Cow<'a, [u8]>>, FrameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.header_len == 0 && input.len() >= HEADER_BYTES {
            let header = [input[0], input[1], input[2], input[3]];
            let len = self.check_len(header).inspect_err(|_| {
                // The header was read, as on the incremental path: it is what is held.
                (self.header, self.header_len) = (header, HEADER_BYTES);
                *input = &input[HEADER_BYTES..];
            })?;
            if input.len() - HEADER_BYTES >= len {
                let frame = &input[HEADER_BYTES..HEADER_BYTES + len];
                *input = &input[HEADER_BYTES + len..];
                self.frames_done += 1;
                return Ok(Some(Cow::Borrowed(frame)));
            }
        }
        self.assemble(input).map(|frame| frame.map(Cow::Owned))
    }

    /// The incremental path: header and payload copied in as they arrive.
    fn assemble(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        let expected = match self.expected {
            Some(n) => n,
            None => {
                let take = (HEADER_BYTES - self.header_len).min(input.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&input[..take]);
                self.header_len += take;
                *input = &input[take..];
                if self.header_len < HEADER_BYTES {
                    return Ok(None);
                }
                let len = self.check_len(self.header)?;
                self.expected = Some(len);
                len
            }
        };
        let take = (expected - self.payload.len()).min(input.len());
        self.payload.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.payload.len() < expected {
            return Ok(None);
        }
        self.header_len = 0;
        self.expected = None;
        self.frames_done += 1;
        Ok(Some(std::mem::take(&mut self.payload)))
    }

    /// The announced payload length, or the sticky `TooLarge` error.
    fn check_len(&mut self, header: [u8; HEADER_BYTES]) -> Result<usize, FrameError> {
        let len = u32::from_be_bytes(header) as usize;
        if len > self.max_frame_bytes {
            let e = FrameError::TooLarge { len, max: self.max_frame_bytes };
            self.error = Some(e);
            return Err(e);
        }
        Ok(len)
    }

    /// Bytes of an unfinished frame currently held (header and payload).
    pub fn buffered_bytes(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// The frame being assembled, if one is partly received: its number (frames returned
    /// before it) and the bytes held for it, header included.
    pub fn partial(&self) -> Option<(u64, usize)> {
        self.is_mid_frame().then_some((self.frames_done, self.buffered_bytes()))
    }

    /// Whether a frame is partly received: at connection close this means the peer cut a frame.
    pub fn is_mid_frame(&self) -> bool {
        self.buffered_bytes() > 0
    }

    /// The configured maximum payload length.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }
}

/// Appends the frame for `payload` (header, then payload) to `out`.
pub fn encode_frame(
    payload: &[u8],
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let len = payload.len();
    if len > max_frame_bytes || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max: max_frame_bytes });
    }
    out.reserve(HEADER_BYTES + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A framing violation. Fatal to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The announced (or, when encoding, the actual) payload length exceeds the maximum.
    TooLarge {
        /// The length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl FrameError {
    /// Stable snake_case name: the metric label and the `error` of invalid test vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "frame_too_large",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
        }
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(p, DEFAULT_MAX_FRAME_BYTES, &mut out).unwrap();
        }
        out
    }

    fn decode_all(dec: &mut FrameDecoder, mut input: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut frames = Vec::new();
        while let Some(f) = dec.decode(&mut input)? {
            frames.push(f);
        }
        assert!(input.is_empty(), "decoder must consume all input when it returns None");
        Ok(frames)
    }

    #[test]
    fn decodes_frames_split_into_single_bytes() {
        let bytes = framed(&[b"abc", b"", b"hello world"]);
        let mut dec = FrameDecoder::new(64);
        let mut frames = Vec::new();
        for b in &bytes {
            frames.extend(decode_all(&mut dec, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(frames, vec![b"abc".to_vec(), vec![], b"hello world".to_vec()]);
        assert!(!dec.is_mid_frame());
    }

    #[test]
    fn decodes_many_frames_from_one_chunk() {
        let bytes = framed(&[b"a", b"bb", b"ccc"]);
        let mut dec = FrameDecoder::new(64);
        assert_eq!(decode_all(&mut dec, &bytes).unwrap().len(), 3);
    }

    #[test]
    fn whole_frames_in_the_input_are_borrowed_and_split_ones_assembled() {
        let bytes = framed(&[b"one", b"two"]);
        let mut dec = FrameDecoder::new(16);
        // The first frame and 3 bytes of the second's header arrive first.
        let (first, rest) = bytes.split_at(HEADER_BYTES + 3 + 3);
        let mut input = first;
        assert!(matches!(dec.next_frame(&mut input), Ok(Some(Cow::Borrowed(b"one")))));
        assert_eq!(dec.next_frame(&mut input), Ok(None));
        assert!(input.is_empty() && dec.is_mid_frame());
        let mut input = rest;
        let second = dec.next_frame(&mut input).unwrap().unwrap();
        assert!(matches!(second, Cow::Owned(_)));
        assert_eq!(&second[..], b"two");
        assert!(!dec.is_mid_frame());
        // The borrowed path checks the length before anything else too, and holds the header
        // it read, as the incremental path does.
        let mut input: &[u8] = &[0, 0, 0, 17, 1];
        assert_eq!(dec.next_frame(&mut input), Err(FrameError::TooLarge { len: 17, max: 16 }));
        assert_eq!((input, dec.buffered_bytes()), (&[1u8][..], HEADER_BYTES));
    }

    #[test]
    fn keeps_partial_frame_between_calls() {
        let bytes = framed(&[b"0123456789"]);
        let mut dec = FrameDecoder::new(64);
        assert!(decode_all(&mut dec, &bytes[..7]).unwrap().is_empty());
        assert_eq!(dec.buffered_bytes(), 7);
        assert!(dec.is_mid_frame());
        assert_eq!(decode_all(&mut dec, &bytes[7..]).unwrap(), vec![b"0123456789".to_vec()]);
    }

    #[test]
    fn rejects_oversized_length_before_buffering_payload() {
        let mut dec = FrameDecoder::new(16);
        let mut input: &[u8] = &[0, 0, 0, 17, 1, 2, 3];
        assert_eq!(dec.decode(&mut input), Err(FrameError::TooLarge { len: 17, max: 16 }));
        // Nothing past the header was consumed or buffered.
        assert_eq!(input, &[1, 2, 3]);
        assert_eq!(dec.payload.capacity(), 0);
    }

    #[test]
    fn accepts_length_equal_to_maximum() {
        let payload = vec![7u8; 16];
        let mut dec = FrameDecoder::new(16);
        assert_eq!(decode_all(&mut dec, &framed(&[&payload])).unwrap(), vec![payload]);
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = FrameDecoder::new(4);
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = dec.decode(&mut input).unwrap_err();
        let mut more: &[u8] = &[0, 0, 0, 1, 9];
        assert_eq!(dec.decode(&mut more), Err(err));
        assert_eq!(more.len(), 5, "nothing consumed after an error");
    }

    #[test]
    fn encode_refuses_oversized_payload() {
        let mut out = Vec::new();
        assert_eq!(
            encode_frame(&[0; 5], 4, &mut out),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn payload_memory_grows_with_received_bytes_not_announced_length() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut input: &[u8] = &[0, 0x10, 0, 0, 1];
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert!(dec.payload.capacity() < 1024, "announced 1 MiB must not be preallocated");
    }
}

//! Frames over a blocking Unix stream, each read and write bounded by a deadline: the
//! [`FrameDecoder`] of the wire (the length is checked before any payload byte is held) fed
//! from socket reads, and whole frames written before a deadline. A peer that trickles bytes
//! cannot stretch a deadline: every read or write waits at most until it.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::wire::frame::{FrameDecoder, FrameError};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Reads whole frames from a stream, keeping bytes read past a frame for the next one.
#[derive(Debug)]
pub struct FrameReader {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    /// A reader refusing frames above `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameReader {
        FrameReader {
            decoder: FrameDecoder::new(max_frame_bytes),
            buf: vec![0; READ_CHUNK_BYTES],
            start: 0,
            end: 0,
        }
    }

    /// The next frame's payload. `deadline`: when to give up (`None` waits as long as it
    /// takes). Sets the stream's read timeout.
    pub fn read_frame(
        &mut self,
        stream: &mut UnixStream,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ReadError> {
        loop {
            let mut input = &self.buf[self.start..self.end];
            let before = input.len();
            let frame = self.decoder.decode(&mut input).map_err(ReadError::TooLarge)?;
            self.start += before - input.len();
            if let Some(frame) = frame {
                return Ok(frame);
            }
            (self.start, self.end) = (0, 0);
            stream.set_read_timeout(Some(remaining(deadline)?)).map_err(ReadError::Io)?;
            let read = stream.read(&mut self.buf);
            // A reset is a close that left our last bytes unread.
            if is_close(&read) {
                let cut = self.decoder.is_mid_frame();
                return Err(if cut { ReadError::Cut } else { ReadError::Closed });
            }
            match read {
                Ok(n) => self.end = n,
                Err(e) if is_timeout(&e) => return Err(ReadError::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Writes all of `bytes` before `deadline`. Sets the stream's write timeout.
pub fn write_all_by(stream: &mut UnixStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = remaining(Some(deadline))
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write deadline passed"))?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Time left until `deadline`, never zero (a zero timeout is refused by the socket); a very
/// long wait for `None`.
fn remaining(deadline: Option<Instant>) -> Result<Duration, ReadError> {
    let Some(deadline) = deadline else { return Ok(FOREVER) };
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(ReadError::TimedOut),
    }
}

/// The read timeout standing for "no deadline": a year.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Whether a read's result says the peer closed: end of stream, or a reset.
fn is_close(read: &io::Result<usize>) -> bool {
    match read {
        Ok(n) => *n == 0,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

/// Whether `e` is a socket timeout (Linux reports `WouldBlock`, others `TimedOut`).
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Why no frame was read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the stream between frames.
    Closed,
    /// The peer closed the stream in the middle of a frame.
    Cut,
    /// The deadline passed first.
    TimedOut,
    /// The header announced more than the frame limit (the stream is unusable after this).
    TooLarge(FrameError),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::Cut => f.write_str("connection closed in the middle of a frame"),
            Self::TimedOut => f.write_str("timed out"),
            Self::TooLarge(e) => e.fmt(f),
            Self::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_across_reads_come_out_whole() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut bytes = Vec::new();
        for payload in [&b"one"[..], b"", b"three"] {
            crate::wire::frame::encode_frame(payload, 64, &mut bytes).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        // The first write ends inside the third frame; the reader keeps what it read ahead.
        write_all_by(&mut a, &bytes[..12], deadline).unwrap();
        let mut reader = FrameReader::new(64);
        assert_eq!(reader.read_frame(&mut b, Some(deadline)).unwrap(), b"one");
        assert_eq!(reader.read_frame(&mut b, Some(deadline)).unwrap(), b"");
        write_all_by(&mut a, &bytes[12..], deadline).unwrap();
        assert_eq!(reader.read_frame(&mut b, Some(deadline)).unwrap(), b"three");
        drop(a);
        assert!(matches!(reader.read_frame(&mut b, Some(deadline)), Err(ReadError::Closed)));
    }

    #[test]
    fn a_silent_peer_times_out_and_a_cut_frame_is_named() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut reader = FrameReader::new(64);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        assert!(matches!(reader.read_frame(&mut b, Some(deadline)), Err(ReadError::TimedOut)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        a.write_all(&[0, 0, 0, 9, 1]).unwrap();
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(reader.read_frame(&mut b, Some(deadline)), Err(ReadError::Cut)));
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 65]).unwrap();
        let mut reader = FrameReader::new(64);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            reader.read_frame(&mut b, Some(deadline)),
            Err(ReadError::TooLarge(FrameError::TooLarge { len: 65, max: 64 }))
        ));
    }
}

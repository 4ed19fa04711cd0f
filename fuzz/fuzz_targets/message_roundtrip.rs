//! Every payload that decodes must re-encode to exactly the same bytes (the encoding is
//! canonical: one message, one byte string), and decoding those bytes again must give the
//! same message. `encode_frame` must produce the same payload behind a correct header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::bytes::hex_encode;
use petrel::wire::{decode, encode, encode_frame, DEFAULT_MAX_FRAME_BYTES as MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data, MAX) else { return };
    let bytes = match encode(&msg, MAX) {
        Ok(bytes) => bytes,
        Err(e) => panic!("decoded {msg:?} but cannot encode it: {e}"),
    };
    if bytes != data {
        panic!(
            "re-encoding differs\n input:  {}\n output: {}\n message: {msg:?}",
            hex_encode(data),
            hex_encode(&bytes)
        );
    }
    assert_eq!(decode(&bytes, MAX).as_ref(), Ok(&msg), "re-decoding differs");

    let mut frame = vec![0xaa];
    encode_frame(&msg, MAX, &mut frame).expect("encode succeeded, encode_frame must too");
    assert_eq!(frame[0], 0xaa, "encode_frame overwrote existing bytes");
    assert_eq!(frame[1..5], (data.len() as u32).to_be_bytes(), "wrong frame header");
    assert_eq!(&frame[5..], data, "encode_frame payload differs from encode");
});

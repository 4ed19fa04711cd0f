//! The control socket's decoders (proto-spec/control.md): byte 0 picks requests (even) or
//! responses (odd), the rest is a frame payload. Decoding never panics; whatever decodes is
//! within its bounds, re-encodes to exactly the same payload behind a correct header (one
//! value, one byte string), and decodes again to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel::control::protocol::{decode_request, decode_response, encode_request, encode_response};

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let mut frame = Vec::new();
    if which % 2 == 0 {
        let Ok(request) = decode_request(payload) else { return };
        encode_request(&request, &mut frame)
            .unwrap_or_else(|e| panic!("decoded {request:?} but cannot encode it: {e}"));
        assert_eq!(decode_request(&frame[4..]).as_ref(), Ok(&request), "re-decoding differs");
    } else {
        let Ok(response) = decode_response(payload) else { return };
        encode_response(&response, &mut frame)
            .unwrap_or_else(|e| panic!("decoded {response:?} but cannot encode it: {e}"));
        assert_eq!(decode_response(&frame[4..]).as_ref(), Ok(&response), "re-decoding differs");
    }
    assert_eq!(frame[..4], (payload.len() as u32).to_be_bytes(), "wrong frame header");
    assert_eq!(&frame[4..], payload, "re-encoding differs");
});

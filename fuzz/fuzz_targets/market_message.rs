//! The market protocol as a node reads it from a peer: a request (what a
//! node's request handler decodes) and an answer (decoded by the zero-copy
//! path, then by the general one, which must agree). The first byte picks
//! which.
#![no_main]

use cairn_proto::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(request) = cairn_proto::from_bytes::<Request>(bytes) {
            // Canonical: whatever decodes re-encodes to the same bytes.
            assert_eq!(cairn_proto::to_bytes(&request), bytes);
        }
    } else {
        let general = cairn_proto::from_bytes::<Response>(bytes);
        match cairn_proto::response(bytes.to_vec()) {
            Ok(answer) => {
                assert_eq!(cairn_proto::to_bytes(&answer), bytes);
                assert_eq!(
                    general.as_ref().ok(),
                    Some(&answer),
                    "the two decoders disagree"
                );
            }
            Err(_) => assert!(
                general.is_err(),
                "the zero-copy decoder refused what the general one took"
            ),
        }
    }
});

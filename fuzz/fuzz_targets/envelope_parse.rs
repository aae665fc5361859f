//! `Envelope::parse` on arbitrary queue bodies: never panics; a refusal has
//! a known kind and a reason; an accepted envelope keeps its invariants and
//! survives re-encoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::envelope::{Envelope, MAX_ID_CHARS, MAX_PAYLOAD_BYTES, encoded_len};

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    match Envelope::parse(&body) {
        Ok(env) => {
            assert_eq!(env.v, 1);
            assert!(!env.id.is_empty() && env.id.chars().count() <= MAX_ID_CHARS);
            assert!(!env.session_id.is_empty() && env.session_id.chars().count() <= MAX_ID_CHARS);
            assert!(!env.action.is_empty() && !env.sender.connection_id.is_empty());
            assert!(env.received_at >= 0);
            assert!(encoded_len(&env.payload) <= MAX_PAYLOAD_BYTES);
            let again = Envelope::parse(&serde_json::to_string(&env).unwrap())
                .expect("a re-encoded envelope parses");
            assert_eq!(again, env);
        }
        Err(e) => {
            assert!(
                [
                    "malformed",
                    "unknown_version",
                    "invalid",
                    "payload_too_large"
                ]
                .contains(&e.kind())
            );
            assert!(!e.to_string().is_empty());
        }
    }
});

//! Connection, request and message ids that look like API Gateway's
//! (`L0SM9cOFvHcCIhw=`: 11 random bytes, URL-safe base64, 16 characters).

use rand::RngCore;

/// A fresh id: 88 bits from the thread's cryptographic RNG, so ids cannot be
/// guessed from earlier ones.
pub fn new_id() -> String {
    let mut bytes = [0u8; 11];
    rand::rng().fill_bytes(&mut bytes);
    data_encoding::BASE64URL.encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = new_id();
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(
                id[..15]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id} must be URL-safe"
            );
            assert!(seen.insert(id));
        }
    }
}

//! Test tokens: signing keys generated per run with aws-lc-rs (the crypto
//! the authorizer verifies with), their JWKS, and JWTs assembled by hand so
//! that tests can also forge the malformed ones (`alg: none`, HS/RS
//! confusion, tampered payloads). Shared by the library's unit tests
//! (`#[path]`) and the integration tests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};

/// A 32-byte HS256 secret (the shortest the authorizer accepts).
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Now, epoch seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding, as JWS uses.
pub fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// Keys an issuer signs with.
pub struct Issuer {
    /// RSA 2048, key id `rsa-1`.
    pub rsa: RsaKeyPair,
    /// P-256, key id `ec-1`.
    pub ec: EcdsaKeyPair,
}

/// How a test token is signed.
pub enum Sign<'a> {
    /// HMAC-SHA256 with this secret.
    Hs256(&'a [u8]),
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256(&'a RsaKeyPair),
    /// ECDSA P-256 SHA-256, fixed-width r||s.
    Es256(&'a EcdsaKeyPair),
    /// No signature at all (`alg: none` attacks).
    Unsigned,
}

impl Issuer {
    /// Fresh keys.
    pub fn new() -> Self {
        Issuer {
            rsa: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
            ec: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key"),
        }
    }

    /// The public JWK of the RSA key.
    pub fn rsa_jwk(&self, kid: &str) -> Value {
        let c: PublicKeyComponents<Vec<u8>> = self.rsa.public_key().into();
        json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
               "n": b64(&c.n), "e": b64(&c.e)})
    }

    /// The public JWK of the EC key.
    pub fn ec_jwk(&self, kid: &str) -> Value {
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = self.ec.public_key().as_ref();
        json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "use": "sig",
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    /// A JWKS with both keys (`rsa-1`, `ec-1`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.rsa_jwk("rsa-1"), self.ec_jwk("ec-1")]})
    }

    /// An RS256 token with key id `rsa-1`.
    pub fn rs256(&self, claims: &Value) -> String {
        token(
            &json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}),
            claims,
            Sign::Rs256(&self.rsa),
        )
    }

    /// An ES256 token with key id `ec-1`.
    pub fn es256(&self, claims: &Value) -> String {
        token(
            &json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}),
            claims,
            Sign::Es256(&self.ec),
        )
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Self::new()
    }
}

/// `header.payload.signature` for any header and claims.
pub fn token(header: &Value, claims: &Value, sign: Sign<'_>) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match sign {
        Sign::Hs256(secret) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, signing_input.as_bytes())
                .as_ref()
                .to_vec()
        }
        Sign::Rs256(kp) => {
            let mut sig = vec![0; kp.public_modulus_len()];
            kp.sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA sign");
            sig
        }
        Sign::Es256(kp) => kp
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("EC sign")
            .as_ref()
            .to_vec(),
        Sign::Unsigned => Vec::new(),
    };
    format!("{signing_input}.{}", b64(&signature))
}

/// An HS256 token.
pub fn hs256(claims: &Value, secret: &[u8]) -> String {
    token(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        Sign::Hs256(secret),
    )
}

/// Claims valid for an hour: `sub`, `iss`, `aud`, `exp`, `iat`.
pub fn claims(sub: &str, iss: &str, aud: &str) -> Value {
    let now = now();
    json!({"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + 3600})
}

/// The token with its payload replaced by `claims` and the old signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let _payload = parts.next().unwrap();
    let signature = parts.next().unwrap();
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}

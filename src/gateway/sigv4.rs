//! SigV4 verification for the @connections API: recomputes the signature of
//! a request with the configured credentials (the `aws-sigv4` signer the
//! SDK's clients sign with) and compares it in constant time, as API Gateway
//! checks callers' IAM signatures on `execute-api:ManageConnections`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, Method, Uri};

use super::config::ManagementCredentials;
use crate::clock::amz_date_ms;

/// How far a request's `X-Amz-Date` may be from now: AWS's 15 minutes.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The service name the @connections API is signed for.
pub const SERVICE: &str = "execute-api";

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// No `Authorization` header (API Gateway: 403 MissingAuthenticationTokenException).
    #[error("Missing Authentication Token")]
    Missing,
    /// Malformed, other credentials, expired, or a signature that does not
    /// match (403 InvalidSignatureException); the text says which, for logs.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> SigV4Error {
    SigV4Error::Invalid(why.into())
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=<hex>`.
fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| invalid("not an AWS4-HMAC-SHA256 signature"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(invalid(
            "Authorization lacks Credential, SignedHeaders or Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(invalid("malformed credential scope"));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// `20240101T000000Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let ms = amz_date_ms(s)?;
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
}

/// Checks the SigV4 signature of a request (`uri` as received, `body` its
/// bytes) against `credentials`, at `now`.
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    credentials: &ManagementCredentials,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    let Some(value) = headers.get("authorization") else {
        return Err(SigV4Error::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("Authorization is not ASCII"))?;
    let auth = parse_authorization(value)?;
    if auth.access_key_id != credentials.access_key_id {
        return Err(invalid("unknown access key id"));
    }
    if auth.service != SERVICE {
        return Err(invalid(format!(
            "signed for service `{}`, not {SERVICE}",
            auth.service
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(invalid(format!("`{required}` is not signed")));
        }
    }
    if auth.signed_headers.contains(&"x-amz-security-token") {
        return Err(invalid(
            "session credentials are not accepted: sign with the configured access key",
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid("no X-Amz-Date"))?;
    let time = parse_amz_date(amz_date).ok_or_else(|| invalid("malformed X-Amz-Date"))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(invalid("credential date does not match X-Amz-Date"));
    }
    let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(invalid(
            "signature expired or from the future (over 15 minutes)",
        ));
    }

    // Recompute over exactly the headers the caller signed; the signer adds
    // x-amz-date (and x-amz-content-sha256 when asked) itself.
    let mut signed = Vec::new();
    let mut checksum = PayloadChecksumKind::NoHeader;
    for name in &auth.signed_headers {
        match *name {
            "x-amz-date" => continue,
            "x-amz-content-sha256" => {
                checksum = PayloadChecksumKind::XAmzSha256;
                continue;
            }
            _ => {}
        }
        let mut any = false;
        for v in headers.get_all(*name) {
            let v = v
                .to_str()
                .map_err(|_| invalid(format!("header `{name}` is not ASCII")))?;
            signed.push((*name, v));
            any = true;
        }
        if !any {
            return Err(invalid(format!("signed header `{name}` is missing")));
        }
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| invalid("no Host"))?;
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://{host}{path_and_query}");
    let request = SignableRequest::new(
        method.as_str(),
        url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| invalid(format!("cannot canonicalize the request: {e}")))?;
    let secret = std::str::from_utf8(credentials.secret_access_key.expose())
        .map_err(|_| invalid("the configured secret access key is not UTF-8"))?;
    let identity = Credentials::new(
        &credentials.access_key_id,
        secret,
        None,
        None,
        "switchboard-management",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign what the caller signed, nothing excluded.
    settings.excluded_headers = Some(Vec::new());
    settings.payload_checksum_kind = checksum;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| invalid(e.to_string()))?
        .into();
    let (_, expected) = sign(request, &params)
        .map_err(|e| invalid(format!("cannot sign: {e}")))?
        .into_parts();
    aws_lc_rs::constant_time::verify_slices_are_equal(
        expected.as_bytes(),
        auth.signature.as_bytes(),
    )
    .map_err(|_| invalid("the signature does not match"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::authorizer::Secret;

    fn creds() -> ManagementCredentials {
        ManagementCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        }
    }

    /// Signs like the SDK does: the real signer over a real request.
    fn signed(method: &str, url: &str, body: &[u8], time: SystemTime, secret: &str) -> HeaderMap {
        let uri: Uri = url.parse().unwrap();
        let host = uri.authority().unwrap().as_str().to_owned();
        let identity = Credentials::new("AKIDEXAMPLE", secret, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [("host", host.as_str())];
        let req = SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(body))
            .unwrap();
        let (instructions, _) = sign(req, &params).unwrap().into_parts();
        let mut out = HeaderMap::new();
        out.insert("host", host.parse().unwrap());
        for (k, v) in instructions.headers() {
            out.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        out
    }

    #[test]
    fn accepts_what_the_signer_signs_and_nothing_else() {
        let now = SystemTime::now();
        let url = "http://127.0.0.1:8080/dev/%40connections/abc%3D";
        let uri: Uri = url.parse().unwrap();
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let h = signed("POST", url, b"hello", now, secret);
        let c = creds();
        assert_eq!(verify(&Method::POST, &uri, &h, b"hello", &c, now), Ok(()));
        // Tampered body, method or path.
        assert!(verify(&Method::POST, &uri, &h, b"hellO", &c, now).is_err());
        assert!(verify(&Method::DELETE, &uri, &h, b"hello", &c, now).is_err());
        let other: Uri = "http://127.0.0.1:8080/dev/%40connections/xyz%3D"
            .parse()
            .unwrap();
        assert!(verify(&Method::POST, &other, &h, b"hello", &c, now).is_err());
        // Another secret.
        let bad = signed("POST", url, b"hello", now, "not-the-secret");
        assert_eq!(
            verify(&Method::POST, &uri, &bad, b"hello", &c, now),
            Err(invalid("the signature does not match"))
        );
        // Too old, or unsigned.
        let late = now + Duration::from_secs(16 * 60);
        assert!(matches!(
            verify(&Method::POST, &uri, &h, b"hello", &c, late),
            Err(SigV4Error::Invalid(why)) if why.contains("15 minutes")
        ));
        assert_eq!(
            verify(&Method::POST, &uri, &HeaderMap::new(), b"", &c, now),
            Err(SigV4Error::Missing)
        );
        // Another access key id.
        let mut other_key = creds();
        other_key.access_key_id = "AKIDOTHER".into();
        assert_eq!(
            verify(&Method::POST, &uri, &h, b"hello", &other_key, now),
            Err(invalid("unknown access key id"))
        );
    }

    #[test]
    fn amz_dates() {
        assert_eq!(
            parse_amz_date("20241127T150000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_732_719_600))
        );
        assert_eq!(parse_amz_date("20241127T150000"), None);
        assert_eq!(parse_amz_date("2024-11-27T15:00Z"), None);
    }
}

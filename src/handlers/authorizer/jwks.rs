//! Where the authorizer's public keys come from: a JWKS document read from a
//! file at startup, or fetched from a URL (a Cognito user pool's
//! `/.well-known/jwks.json`, Auth0's, ...) and cached.
//!
//! A fetched set is refreshed when a token names a key id it does not hold
//! (keys rotate in), at most once per `refresh_interval` so that tokens with
//! made-up key ids cannot make us hammer the issuer; and when it is older than
//! `max_age` (keys rotate out). If a refresh fails, the keys already held stay
//! in use.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use super::AuthorizerError;

/// Longest wait for a JWKS endpoint.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read (Cognito's is about 1 KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The configured key source of an RS/PS/ES authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Keys read from a file when the configuration was loaded.
    Keys(JwkSet),
    /// An `http://` or `https://` URL, fetched on first use and cached.
    Url(Uri),
}

impl JwksSource {
    /// Parses a JWKS document, refusing keys that cannot verify signatures
    /// (symmetric `oct` keys: a JWKS is public, an HMAC key in it would let
    /// anyone sign).
    pub fn parse_document(text: &str) -> Result<JwkSet, String> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        if set
            .keys
            .iter()
            .any(|k| matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        {
            return Err("symmetric keys (kty \"oct\") are not accepted in a JWKS: \
                 use `secret` for HS algorithms"
                .into());
        }
        Ok(set)
    }
}

/// Whether `jwk` may verify a token signed with `alg`.
pub(super) fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return false;
    }
    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != format!("{alg:?}")
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        _ => false,
    }
}

/// The key for (`kid`, `alg`) in `set`: by id, or the only fitting key when
/// the token names none.
fn select(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let mut fitting = set.keys.iter().filter(|k| fits(k, alg));
    match kid {
        Some(kid) => fitting
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let first = fitting.next()?;
            fitting.next().is_none().then(|| first.clone())
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Fetched {
    keys: Arc<JwkSet>,
    at: Instant,
}

/// The keys of one authorizer, fetched and cached for a URL source.
pub(super) struct KeyStore {
    source: JwksSource,
    refresh_interval: Duration,
    max_age: Duration,
    fetched: RwLock<Option<Fetched>>,
    /// One fetch at a time; others wait and use its result.
    fetching: Mutex<()>,
    client: OnceLock<HttpsClient>,
}

impl KeyStore {
    pub(super) fn new(source: JwksSource, refresh_interval: Duration, max_age: Duration) -> Self {
        KeyStore {
            source,
            refresh_interval,
            max_age,
            fetched: RwLock::new(None),
            fetching: Mutex::new(()),
            client: OnceLock::new(),
        }
    }

    /// The decoding key for a token's `kid` and `alg`; `Ok(None)` when no key
    /// fits (the token is refused), `Err` when the keys cannot be had.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<DecodingKey>, AuthorizerError> {
        let uri = match &self.source {
            JwksSource::Keys(set) => return decoding_key(select(set, kid, alg)),
            JwksSource::Url(uri) => uri,
        };
        let (held, at) = match self.snapshot().await {
            Some(s) => s,
            None => self.refresh(uri, None).await?,
        };
        let (held, at) = if at.elapsed() >= self.max_age {
            self.refresh_or_keep(uri, (held, at)).await
        } else {
            (held, at)
        };
        if let Some(k) = select(&held, kid, alg) {
            return decoding_key(Some(k));
        }
        // An unknown key id: perhaps the issuer rotated keys. Refresh, rate limited.
        if at.elapsed() < self.refresh_interval {
            return Ok(None);
        }
        let (held, _) = self.refresh_or_keep(uri, (held, at)).await;
        decoding_key(select(&held, kid, alg))
    }

    async fn snapshot(&self) -> Option<(Arc<JwkSet>, Instant)> {
        self.fetched
            .read()
            .await
            .as_ref()
            .map(|f| (f.keys.clone(), f.at))
    }

    async fn refresh_or_keep(
        &self,
        uri: &Uri,
        held: (Arc<JwkSet>, Instant),
    ) -> (Arc<JwkSet>, Instant) {
        match self.refresh(uri, Some(held.1)).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(jwks = %uri, error = %e, "JWKS refresh failed; keeping the keys held");
                held
            }
        }
    }

    /// Fetches the set unless another caller did since `seen` (the fetch time
    /// the caller based its decision on).
    async fn refresh(
        &self,
        uri: &Uri,
        seen: Option<Instant>,
    ) -> Result<(Arc<JwkSet>, Instant), AuthorizerError> {
        let _one = self.fetching.lock().await;
        if let Some((keys, at)) = self.snapshot().await
            && Some(at) != seen
        {
            return Ok((keys, at));
        }
        let keys = Arc::new(self.fetch(uri).await?);
        let at = Instant::now();
        tracing::info!(jwks = %uri, keys = keys.keys.len(), "JWKS fetched");
        *self.fetched.write().await = Some(Fetched {
            keys: keys.clone(),
            at,
        });
        Ok((keys, at))
    }

    async fn fetch(&self, uri: &Uri) -> Result<JwkSet, AuthorizerError> {
        let fail = |what: String| AuthorizerError::Failed(format!("JWKS {uri}: {what}"));
        let client = self.client.get_or_init(https_client);
        let request = Request::get(uri.clone())
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(request))
            .await
            .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?
            .map_err(|e| fail(format!("request failed: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(fail(format!("answered {}", response.status())));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| fail(format!("body not read within {FETCH_TIMEOUT:?}")))?
        .map_err(|e| fail(format!("cannot read the body: {e}")))?
        .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| fail("body is not UTF-8".into()))?;
        JwksSource::parse_document(text).map_err(fail)
    }
}

fn decoding_key(jwk: Option<Jwk>) -> Result<Option<DecodingKey>, AuthorizerError> {
    let Some(jwk) = jwk else { return Ok(None) };
    DecodingKey::from_jwk(&jwk)
        .map(Some)
        .map_err(|e| AuthorizerError::Failed(format!("unusable JWKS key: {e}")))
}

/// An HTTP(S) client on the rustls + aws-lc-rs stack the AWS SDK already
/// builds, trusting the platform's roots (none found: https fails, http works).
fn https_client() -> HttpsClient {
    let builder = crate::tls::connector_builder("JWKS URLs");
    let connector = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(connector)
}

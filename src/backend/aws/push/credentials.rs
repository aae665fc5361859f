//! The lean client's credentials: from the SDK configuration's provider (the
//! standard chain: environment, profile, web identity, ECS/IMDS roles),
//! cached and fetched again shortly before they expire, as the SDK's lazy
//! identity cache does; a failed refresh keeps the cached ones until they
//! expire. Each set carries its signing key of the day ([`DayKey`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use hyper::header::HeaderValue;

use super::sign::DayKey;
use crate::backend::{BackendError, ErrorKind, Result};
use crate::sync::{read, write};

/// The operation name in errors and logs (as with the SDK client).
pub(super) const OP: &str = "apigateway.PostToConnection";
/// Credentials without an expiry are fetched again after this long (the
/// SDK's lazy identity cache default).
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(15 * 60);
/// Credentials are refreshed this long (plus up to half again, jittered)
/// before they expire, like the SDK's lazy identity cache.
const REFRESH_BUFFER: Duration = Duration::from_secs(10);

/// One set of credentials and what is derived from them.
pub(super) struct Signer {
    access_key_id: String,
    secret: String,
    /// Checked to be a valid header value.
    pub(super) session_token: Option<HeaderValue>,
    /// When to fetch credentials again (before they expire).
    refresh_at: SystemTime,
    /// Hard expiry, if the provider gave one.
    expires_at: Option<SystemTime>,
    /// The signing key and `Authorization` prefix of the last day signed.
    day: RwLock<Option<Arc<DayKey>>>,
}

impl Signer {
    /// The signing key of `day` (derived on the first request of the day).
    pub(super) fn day_key(&self, day: i64, yyyymmdd: &str, region: &str) -> Arc<DayKey> {
        if let Some(k) = read(&self.day).as_ref()
            && k.day == day
        {
            return k.clone();
        }
        let k = Arc::new(DayKey::derive(
            &self.access_key_id,
            &self.secret,
            self.session_token.is_some(),
            day,
            yyyymmdd,
            region,
        ));
        *write(&self.day) = Some(k.clone());
        k
    }

    /// The session token as signed and sent.
    pub(super) fn token(&self) -> Option<&str> {
        self.session_token
            .as_ref()
            .map(|t| t.to_str().unwrap_or_default())
    }
}

/// The credentials in use, and the one refresh in progress.
pub(super) struct Credentials {
    provider: Option<SharedCredentialsProvider>,
    current: RwLock<Option<Arc<Signer>>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Credentials {
    pub(super) fn new(provider: Option<SharedCredentialsProvider>) -> Self {
        Credentials {
            provider,
            current: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The current credentials at `now`, fetched (once, for all callers)
    /// when there are none or they are about to expire.
    pub(super) async fn signer(&self, now: SystemTime) -> Result<Arc<Signer>> {
        if let Some(s) = read(&self.current).as_ref()
            && now < s.refresh_at
        {
            return Ok(s.clone());
        }
        let _one = self.refreshing.lock().await;
        let current = read(&self.current).clone();
        if let Some(s) = &current
            && now < s.refresh_at
        {
            return Ok(s.clone());
        }
        let Some(provider) = &self.provider else {
            return Err(BackendError::new(
                ErrorKind::AccessDenied,
                OP,
                "no AWS credentials provider is configured",
            ));
        };
        match provider.provide_credentials().await {
            Ok(c) => {
                let expires_at = c.expiry();
                let until = expires_at.unwrap_or(now + DEFAULT_EXPIRATION);
                let buffer = REFRESH_BUFFER.mul_f64(1.0 + rand::random::<f64>() * 0.5);
                let session_token = c
                    .session_token()
                    .map(|t| HeaderValue::from_str(t.trim_matches(' ')))
                    .transpose()
                    .map_err(|_| {
                        BackendError::new(
                            ErrorKind::AccessDenied,
                            OP,
                            "the session token is not a valid header value",
                        )
                    })?;
                // Sent as is in `Authorization`: no control characters.
                if HeaderValue::from_str(c.access_key_id()).is_err() {
                    return Err(BackendError::new(
                        ErrorKind::Validation,
                        OP,
                        "the access key id is not a valid header value",
                    ));
                }
                let signer = Arc::new(Signer {
                    access_key_id: c.access_key_id().to_owned(),
                    secret: c.secret_access_key().to_owned(),
                    session_token,
                    refresh_at: until.checked_sub(buffer).unwrap_or(now),
                    expires_at,
                    day: RwLock::default(),
                });
                *write(&self.current) = Some(signer.clone());
                Ok(signer)
            }
            // Keep signing with credentials that have not expired yet.
            Err(e) => match current {
                Some(s) if s.expires_at.is_none_or(|t| now < t) => {
                    tracing::warn!(error = %DisplayCredentialsError(&e), "could not refresh AWS credentials; using the cached ones");
                    Ok(s)
                }
                _ => Err(credentials_error(&e)),
            },
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!(": {err}"));
        cur = err.source();
    }
    s
}

struct DisplayCredentialsError<'a>(&'a CredentialsError);

impl std::fmt::Display for DisplayCredentialsError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(self.0))
    }
}

/// A provider that timed out or failed may work next time; missing or
/// invalid credentials will not.
fn credentials_error(e: &CredentialsError) -> BackendError {
    let kind = match e {
        CredentialsError::ProviderTimedOut(_) => ErrorKind::Timeout,
        CredentialsError::ProviderError(_) => ErrorKind::Network,
        _ => ErrorKind::AccessDenied,
    };
    BackendError::new(
        kind,
        OP,
        format!(
            "cannot load AWS credentials: {}",
            DisplayCredentialsError(e)
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts fetches; its credentials expire `ttl` after each fetch.
    #[derive(Debug)]
    struct Counting {
        fetches: Arc<AtomicUsize>,
        ttl: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                aws_credential_types::Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    Some("token".into()),
                    self.ttl.map(|t| SystemTime::now() + t),
                    "counting",
                ),
            ))
        }
    }

    async fn fetches_for(ttl: Option<Duration>) -> (usize, String) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            fetches: fetches.clone(),
            ttl,
        };
        let creds = Credentials::new(Some(SharedCredentialsProvider::new(provider)));
        let mut last = String::new();
        for _ in 0..3 {
            let s = creds.signer(SystemTime::now()).await.unwrap();
            assert_eq!(s.token(), Some("token"));
            last = s.access_key_id.clone();
        }
        (fetches.load(Ordering::SeqCst), last)
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        // An hour left: fetched once. No expiry: once (kept 15 minutes).
        assert_eq!(
            fetches_for(Some(Duration::from_secs(3600))).await,
            (1, "AKID0".into())
        );
        assert_eq!(fetches_for(None).await, (1, "AKID0".into()));
        // Inside the refresh buffer: fetched again each time.
        assert_eq!(
            fetches_for(Some(Duration::from_secs(5))).await,
            (3, "AKID2".into())
        );
    }
}

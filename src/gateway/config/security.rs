//! The edge-security part of the configuration, validated: stage IP rules and
//! throttles, authorizers, usage plans and API keys, TLS, who may call
//! @connections. What each does, and its AWS counterpart: docs/security.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::IpNet;

use crate::handlers::authorizer::{AuthorizerConfig, Secret};

/// A token bucket: `rate` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket size; 0 refuses everything.
    pub burst: u32,
}

impl Throttle {
    /// API Gateway's default account-level limit per Region: 10,000 requests
    /// per second with bursts of 5,000; what a stage gets without `throttle`.
    pub const ACCOUNT_DEFAULT: Throttle = Throttle {
        rate: 10_000.0,
        burst: 5_000,
    };
}

/// What a stage enforces before routing, like WAF and stage settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSettings {
    /// Client addresses allowed in; empty = all.
    pub ip_allow: Vec<IpNet>,
    /// Client addresses refused; wins over `ip_allow`.
    pub ip_deny: Vec<IpNet>,
    /// Take the client address from `X-Forwarded-For` (its last entry, the
    /// one the trusted proxy appended).
    pub trusted_proxy: bool,
    /// Every `$connect` and message of the stage.
    pub throttle: Throttle,
    /// New connections per client address (IPv6 per /64).
    pub connect_throttle_per_ip: Option<Throttle>,
    /// Per route of this stage, replacing the route's own `throttle`.
    pub route_throttle: BTreeMap<String, Throttle>,
    /// Origins whose pages may open WebSockets (lowercase); empty = any, as
    /// on API Gateway. Handshakes without `Origin` (not browsers) pass.
    pub allowed_origins: Vec<String>,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            trusted_proxy: false,
            throttle: Throttle::ACCOUNT_DEFAULT,
            connect_throttle_per_ip: None,
            route_throttle: BTreeMap::new(),
            allowed_origins: Vec::new(),
        }
    }
}

/// The settings of a stage without a `[stages.NAME]` table of its own.
pub(crate) static DEFAULT_STAGE: LazyLock<StageSettings> = LazyLock::new(StageSettings::default);

/// An authorizer and how long its answers are reused.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerSettings {
    /// What it accepts.
    pub config: AuthorizerConfig,
    /// Answers are cached per identity (the identity sources' values) this
    /// long, as API Gateway's `authorizerResultTtlInSeconds`; zero = off.
    pub cache_ttl: Duration,
}

/// The default `cache_ttl_secs`, API Gateway's.
pub const DEFAULT_AUTHORIZER_CACHE_TTL: Duration = Duration::from_secs(300);

/// The SHA-256 of an API key: keys are configured, held and compared only
/// as hashes, so neither the file nor a log nor a memory dump holds a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of a presented key.
    pub fn of(key: &str) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyHash(out)
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            "API keys are given as \"sha256:<hex>\" (printf %s \"$KEY\" | sha256sum)".to_owned()
        })?;
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("`{s}` is not sha256: followed by 64 hex digits"))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(KeyHash(out))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to tell keys apart in a debug dump.
        let hex = data_encoding::HEXLOWER.encode(&self.0[..4]);
        write!(f, "sha256:{hex}…")
    }
}

/// A usage plan's quota period; periods start at 00:00 UTC (weeks on Monday,
/// months on the 1st).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// A calendar day.
    Day,
    /// A calendar week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

/// At most `limit` requests per key per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
}

/// A usage plan: the stages it covers, its per-key throttle and quota, its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePlan {
    /// Stage names.
    pub stages: Vec<String>,
    /// Per key.
    pub throttle: Option<Throttle>,
    /// Per key.
    pub quota: Option<Quota>,
    /// The keys, hashed.
    pub api_keys: Vec<KeyHash>,
}

/// `[api] api_key_selection_expression`: where a request's API key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKeySource {
    /// `$request.header.x-api-key` (the default).
    #[default]
    Header,
    /// `$context.authorizer.usageIdentifierKey`: the authorizer's answer.
    Authorizer,
}

/// `[tls]`: the certificate chain and key, loaded and checked.
#[derive(Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The server configuration built from them (aws-lc-rs, TLS 1.2 and 1.3,
    /// ALPN http/1.1).
    pub server: Arc<rustls::ServerConfig>,
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// Credentials @connections callers must sign requests with (SigV4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementCredentials {
    /// The access key id callers sign with.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
}

/// Who may call the @connections API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Management {
    /// Only clients on a loopback address, unsigned (the default).
    #[default]
    Loopback,
    /// Every request must carry a valid SigV4 signature made with `credentials`;
    /// `any_address` = callers may be anywhere (`bind = "any"`), otherwise
    /// loopback only as well.
    SigV4 {
        /// The expected signer.
        credentials: ManagementCredentials,
        /// Whether non-loopback callers are answered.
        any_address: bool,
    },
}

/// What a configuration file may refer to outside itself: files, relative to
/// `base_dir`, and environment variables, for `env:NAME` secrets. Passed in,
/// so that nothing deep in the code reads the process environment.
#[derive(Clone, Copy)]
pub struct Environment<'a> {
    /// Where relative paths start (the configuration file's directory).
    pub base_dir: &'a Path,
    /// Looks a variable up.
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Environment<'static> {
    /// The process environment, paths relative to the working directory.
    pub fn process() -> Self {
        Environment {
            base_dir: Path::new("."),
            var: &process_var,
        }
    }
}

impl Environment<'_> {
    /// `path` resolved against `base_dir` unless absolute.
    pub fn path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }
}

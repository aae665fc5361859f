//! The TLS every outgoing HTTP client here uses (the lean @connections
//! client, JWKS fetches, the OTLP exporter): rustls on aws-lc-rs, the stack
//! the AWS SDK already builds, trusting the platform's root certificates.

use std::sync::Arc;

use hyper_rustls::HttpsConnectorBuilder;
use hyper_rustls::builderstates::WantsSchemes;

/// A connector builder with the platform's roots; without any (a bare
/// container), one warning that `https` `what` will fail, and no roots:
/// plain `http://` still works.
pub(crate) fn connector_builder(what: &str) -> HttpsConnectorBuilder<WantsSchemes> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no platform root certificates: https {what} will fail");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        }
    }
}

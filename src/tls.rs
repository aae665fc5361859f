//! The TLS every outgoing HTTP client here uses (the lean @connections
//! client, JWKS fetches, the OTLP exporter): rustls on aws-lc-rs, the stack
//! the AWS SDK already builds, trusting the platform's root certificates.

use std::sync::Arc;

use hyper_rustls::builderstates::WantsSchemes;
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnectorBuilder};

/// A client configuration with the platform's roots; without any (a bare
/// container), one warning that `https` `what` will fail, and no roots:
/// plain `http://` still works.
pub(crate) fn client_config(what: &str) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    match builder.clone().with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "no platform root certificates: https {what} will fail");
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    }
}

/// A hyper connector builder with [`client_config`].
pub(crate) fn connector_builder(what: &str) -> HttpsConnectorBuilder<WantsSchemes> {
    HttpsConnectorBuilder::new().with_tls_config(client_config(what))
}

//! [`Push`] through the API Gateway management API (`@connections`): the
//! lean client on the hot path ([`LeanPush`]), and the SDK client, one per
//! endpoint, kept as the reference the lean one is tested against.

mod credentials;
mod http1;
mod lean;
mod sign;

pub use lean::{Clock, LeanPush};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;

use super::classify;
use crate::backend::{Push, Result};

/// Posts frames with the real `aws-sdk-apigatewaymanagement` client.
#[derive(Clone, Debug)]
pub struct ApiGatewayPush {
    base: aws_sdk_apigatewaymanagement::config::Builder,
    clients: Arc<RwLock<HashMap<String, aws_sdk_apigatewaymanagement::Client>>>,
}

impl ApiGatewayPush {
    /// Clients are built from `base` with each endpoint's URL.
    pub fn new(base: aws_sdk_apigatewaymanagement::config::Builder) -> Self {
        ApiGatewayPush {
            base,
            clients: Arc::default(),
        }
    }

    fn client(&self, endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
        if let Some(c) = self
            .clients
            .read()
            .ok()
            .and_then(|m| m.get(endpoint).cloned())
        {
            return c;
        }
        let client = aws_sdk_apigatewaymanagement::Client::from_conf(
            self.base.clone().endpoint_url(endpoint).build(),
        );
        if let Ok(mut m) = self.clients.write() {
            m.entry(endpoint.to_owned())
                .or_insert_with(|| client.clone());
        }
        client
    }
}

#[async_trait]
impl Push for ApiGatewayPush {
    async fn post(&self, endpoint: &str, connection_id: &str, data: Bytes) -> Result<()> {
        self.client(endpoint)
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .map_err(|e| classify("apigateway.PostToConnection", e))?;
        Ok(())
    }
}

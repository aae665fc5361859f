//! The backend a function was not given. `Handlers` holds a queue and a
//! connections table, but `$connect`/`$disconnect` never touch the queue and
//! `$default` touches neither; those functions have no such variable and no
//! IAM permission for it (deploy/template.json), so instead of a client
//! pointed at nothing they get this, which fails every call with an error
//! saying so.

use std::time::Duration;

use async_trait::async_trait;

use super::Function;
use crate::backend::{
    BackendError, Connection, Connections, ErrorKind, OutgoingMessage, Page, Queue, QueueInfo,
    QueueMessage, ReceiveRequest, Result,
};

/// A queue or table that `function` was not configured with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unconfigured {
    pub(super) function: Function,
}

impl Unconfigured {
    fn fail<T>(&self, op: &'static str) -> Result<T> {
        Err(BackendError::new(
            ErrorKind::Other,
            op,
            format!(
                "{} has no {} configured (a bug: this handler should not need it)",
                self.function.binary(),
                if op.starts_with("sqs") {
                    "queue"
                } else {
                    "connections table"
                }
            ),
        ))
    }
}

#[async_trait]
impl Queue for Unconfigured {
    fn url(&self) -> &str {
        ""
    }

    async fn receive(&self, _req: ReceiveRequest) -> Result<Vec<QueueMessage>> {
        self.fail("sqs.ReceiveMessage")
    }

    async fn delete_batch(&self, _receipt_handles: &[&str]) -> Result<Vec<Result<()>>> {
        self.fail("sqs.DeleteMessageBatch")
    }

    async fn change_visibility_batch(
        &self,
        _entries: &[(&str, Duration)],
    ) -> Result<Vec<Result<()>>> {
        self.fail("sqs.ChangeMessageVisibilityBatch")
    }

    async fn send(&self, _msg: &OutgoingMessage) -> Result<String> {
        self.fail("sqs.SendMessage")
    }

    async fn info(&self) -> Result<QueueInfo> {
        self.fail("sqs.GetQueueAttributes")
    }
}

#[async_trait]
impl Connections for Unconfigured {
    async fn put(&self, _conn: &Connection) -> Result<()> {
        self.fail("dynamodb.PutItem")
    }

    async fn get(&self, _connection_id: &str) -> Result<Option<Connection>> {
        self.fail("dynamodb.GetItem")
    }

    async fn delete(&self, _connection_id: &str) -> Result<()> {
        self.fail("dynamodb.DeleteItem")
    }

    async fn delete_if_same(&self, _conn: &Connection) -> Result<bool> {
        self.fail("dynamodb.DeleteItem")
    }

    async fn by_session(
        &self,
        _session_id: &str,
        _cursor: Option<String>,
    ) -> Result<Page<Connection>> {
        self.fail("dynamodb.Query")
    }

    async fn by_user(&self, _user_id: &str, _cursor: Option<String>) -> Result<Page<Connection>> {
        self.fail("dynamodb.Query")
    }
}

//! `switchboard migrate`: applies the definitions in `migrations/`
//! ([`crate::migrations`]) idempotently. Creates what is missing, adds missing
//! GSIs, enables TTL, brings queue attributes in line, reports each step.
//! Never deletes anything.
//!
//! The files use CloudFormation property names, so the deploy template and
//! these definitions can be compared field by field. The DynamoDB half is in
//! `dynamodb.rs`, the SQS half in `sqs.rs`.

mod dynamodb;
mod sqs;

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::backend::aws::AwsBackend;
pub use crate::migrations::{MIGRATIONS, Migration, Names, migrations};

/// What `migrate` ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One line per step.
    pub steps: Vec<String>,
    /// URL of the inbound queue.
    pub queue_url: String,
    /// URL of its dead-letter queue.
    pub dlq_url: String,
}

/// Applies every migration; `say` gets each step as it happens.
pub async fn run(
    aws: &AwsBackend,
    names: &Names,
    timeout: Duration,
    mut say: impl FnMut(&str),
) -> Result<Report> {
    let mut steps = Vec::new();
    let mut step = |line: String| {
        say(&line);
        steps.push(line);
    };
    // logical id → (url, arn) of queues created so far, for RedrivePolicy refs.
    let mut queues = sqs::Applied::new();
    for m in migrations()? {
        let name = names
            .for_logical_id(&m.logical_id)
            .ok_or_else(|| anyhow!("migration with unknown logical_id {}", m.logical_id))?;
        match m.kind.as_str() {
            "dynamodb_table" => {
                let props: dynamodb::TableProps = serde_json::from_value(m.properties.clone())
                    .with_context(|| format!("properties of {}", m.logical_id))?;
                dynamodb::apply_table(aws, name, &props, timeout, &mut step).await?;
            }
            "sqs_queue" => {
                let (url, arn) =
                    sqs::apply_queue(aws, name, &m.properties, &queues, &mut step).await?;
                queues.insert(m.logical_id.clone(), (url, arn));
            }
            other => bail!("migration {} has unknown kind {other}", m.logical_id),
        }
    }
    let url = |id: &str| {
        queues
            .get(id)
            .map(|(u, _)| u.clone())
            .ok_or_else(|| anyhow!("migrations define no {id}"))
    };
    Ok(Report {
        queue_url: url("InboundQueue")?,
        dlq_url: url("InboundDeadLetterQueue")?,
        steps,
    })
}

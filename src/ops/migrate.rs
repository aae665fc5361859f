//! `switchboard migrate`: applies the definitions in `migrations/` idempotently.
//! Creates what is missing, adds missing GSIs, enables TTL, brings queue
//! attributes in line, reports each step. Never deletes anything.
//!
//! The files use CloudFormation property names, so the deploy template and
//! these definitions can be compared field by field.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;
use serde_json::Value;

use crate::backend::ErrorKind;
use crate::backend::aws::{AwsBackend, classify};
use crate::cli::MigrateArgs;

/// The migration files, embedded so the binary works from any directory.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_connections_table.json",
        include_str!("../../migrations/0001_connections_table.json"),
    ),
    (
        "0002_messages_table.json",
        include_str!("../../migrations/0002_messages_table.json"),
    ),
    (
        "0003_inbound_dlq.json",
        include_str!("../../migrations/0003_inbound_dlq.json"),
    ),
    (
        "0004_inbound_queue.json",
        include_str!("../../migrations/0004_inbound_queue.json"),
    ),
];

/// One migration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// `dynamodb_table` or `sqs_queue`.
    pub kind: String,
    /// Logical id, as in the CloudFormation template.
    pub logical_id: String,
    /// What it is for.
    pub description: String,
    /// CloudFormation properties.
    pub properties: Value,
}

/// Parses the embedded migrations.
pub fn migrations() -> Result<Vec<Migration>> {
    MIGRATIONS
        .iter()
        .map(|(name, text)| {
            serde_json::from_str(text).with_context(|| format!("migrations/{name}"))
        })
        .collect()
}

/// Resource names, overridable per deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Connections table.
    pub connections_table: String,
    /// Messages table.
    pub messages_table: String,
    /// Inbound FIFO queue.
    pub queue: String,
    /// Its dead-letter queue.
    pub dlq: String,
}

impl Default for Names {
    /// The names of DESIGN.md (and of `migrations/`).
    fn default() -> Self {
        Names {
            connections_table: "switchboard-connections".into(),
            messages_table: "switchboard-messages".into(),
            queue: "switchboard-inbound.fifo".into(),
            dlq: "switchboard-inbound-dlq.fifo".into(),
        }
    }
}

impl From<&MigrateArgs> for Names {
    fn from(a: &MigrateArgs) -> Self {
        Names {
            connections_table: a.tables.connections_table.clone(),
            messages_table: a.tables.messages_table.clone(),
            queue: a.queue_name.clone(),
            dlq: a.dlq_name.clone(),
        }
    }
}

impl Names {
    /// The name given to the resource with CloudFormation logical id `id`.
    pub fn for_logical_id(&self, id: &str) -> Option<&str> {
        Some(match id {
            "ConnectionsTable" => &self.connections_table,
            "MessagesTable" => &self.messages_table,
            "InboundQueue" => &self.queue,
            "InboundDeadLetterQueue" => &self.dlq,
            _ => return None,
        })
    }
}

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
    let mut queues: HashMap<String, (String, String)> = HashMap::new();
    for m in migrations()? {
        let name = names
            .for_logical_id(&m.logical_id)
            .ok_or_else(|| anyhow!("migration with unknown logical_id {}", m.logical_id))?;
        match m.kind.as_str() {
            "dynamodb_table" => {
                let props: TableProps = serde_json::from_value(m.properties.clone())
                    .with_context(|| format!("properties of {}", m.logical_id))?;
                apply_table(aws, name, &props, timeout, &mut step).await?;
            }
            "sqs_queue" => {
                let (url, arn) = apply_queue(aws, name, &m.properties, &queues, &mut step).await?;
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

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableProps {
    #[allow(dead_code)]
    table_name: String,
    billing_mode: String,
    attribute_definitions: Vec<AttrDef>,
    key_schema: Vec<KeyElem>,
    #[serde(default)]
    global_secondary_indexes: Vec<Gsi>,
    time_to_live_specification: Option<Ttl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttrDef {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyElem {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Gsi {
    index_name: String,
    key_schema: Vec<KeyElem>,
    projection: ProjectionDef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProjectionDef {
    projection_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ttl {
    attribute_name: String,
    enabled: bool,
}

fn key_schema(keys: &[KeyElem]) -> Result<Vec<KeySchemaElement>> {
    keys.iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()?)
        })
        .collect()
}

fn attribute_definitions(props: &TableProps, used: &[&str]) -> Result<Vec<AttributeDefinition>> {
    props
        .attribute_definitions
        .iter()
        .filter(|a| used.contains(&a.attribute_name.as_str()))
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?)
        })
        .collect()
}

fn gsi(g: &Gsi) -> Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(&g.index_name)
        .set_key_schema(Some(key_schema(&g.key_schema)?))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::from(g.projection.projection_type.as_str()))
                .build(),
        )
        .build()?)
}

async fn apply_table(
    aws: &AwsBackend,
    name: &str,
    props: &TableProps,
    timeout: Duration,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let ddb = aws.dynamodb();
    let existing = match ddb.describe_table().table_name(name).send().await {
        Ok(out) => out.table,
        Err(e) => {
            let e = classify("dynamodb.DescribeTable", e);
            if e.kind != ErrorKind::NotFound {
                return Err(e).with_context(|| format!("cannot read table {name}"));
            }
            None
        }
    };
    match existing {
        None => {
            let mut used: Vec<&str> = props
                .key_schema
                .iter()
                .map(|k| k.attribute_name.as_str())
                .collect();
            for g in &props.global_secondary_indexes {
                used.extend(g.key_schema.iter().map(|k| k.attribute_name.as_str()));
            }
            let gsis = props
                .global_secondary_indexes
                .iter()
                .map(gsi)
                .collect::<Result<Vec<_>>>()?;
            ddb.create_table()
                .table_name(name)
                .billing_mode(BillingMode::from(props.billing_mode.as_str()))
                .set_attribute_definitions(Some(attribute_definitions(props, &used)?))
                .set_key_schema(Some(key_schema(&props.key_schema)?))
                .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
                .send()
                .await
                .map_err(|e| classify("dynamodb.CreateTable", e))
                .with_context(|| format!("cannot create table {name}"))?;
            let gsi_names: Vec<&str> = props
                .global_secondary_indexes
                .iter()
                .map(|g| g.index_name.as_str())
                .collect();
            step(if gsi_names.is_empty() {
                format!("table {name}: created")
            } else {
                format!("table {name}: created with GSIs {}", gsi_names.join(", "))
            });
            wait_active(aws, name, timeout, step).await?;
        }
        Some(table) => {
            let have_keys: Vec<(String, String)> = table
                .key_schema()
                .iter()
                .map(|k| {
                    (
                        k.attribute_name().to_owned(),
                        k.key_type().as_str().to_owned(),
                    )
                })
                .collect();
            let want_keys: Vec<(String, String)> = props
                .key_schema
                .iter()
                .map(|k| (k.attribute_name.clone(), k.key_type.clone()))
                .collect();
            if have_keys != want_keys {
                bail!(
                    "table {name} exists with key schema {have_keys:?}, but {want_keys:?} is required; \
                     a key schema cannot be changed: use another table name (--connections-table / --messages-table)"
                );
            }
            step(format!("table {name}: exists"));
            let have: Vec<String> = table
                .global_secondary_indexes()
                .iter()
                .filter_map(|g| g.index_name().map(str::to_owned))
                .collect();
            for g in &props.global_secondary_indexes {
                if have.contains(&g.index_name) {
                    step(format!("table {name}: GSI {} exists", g.index_name));
                    continue;
                }
                let used: Vec<&str> = g
                    .key_schema
                    .iter()
                    .map(|k| k.attribute_name.as_str())
                    .collect();
                let create = CreateGlobalSecondaryIndexAction::builder()
                    .index_name(&g.index_name)
                    .set_key_schema(Some(key_schema(&g.key_schema)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                g.projection.projection_type.as_str(),
                            ))
                            .build(),
                    )
                    .build()?;
                // DynamoDB creates one GSI per UpdateTable call.
                ddb.update_table()
                    .table_name(name)
                    .set_attribute_definitions(Some(attribute_definitions(props, &used)?))
                    .global_secondary_index_updates(
                        GlobalSecondaryIndexUpdate::builder().create(create).build(),
                    )
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb.UpdateTable", e))
                    .with_context(|| format!("cannot add GSI {} to {name}", g.index_name))?;
                step(format!("table {name}: GSI {} created", g.index_name));
                wait_active(aws, name, timeout, step).await?;
            }
        }
    }
    if let Some(ttl) = &props.time_to_live_specification {
        apply_ttl(aws, name, ttl, step).await?;
    }
    Ok(())
}

async fn wait_active(
    aws: &AwsBackend,
    name: &str,
    timeout: Duration,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut said = false;
    loop {
        let out = aws
            .dynamodb()
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify("dynamodb.DescribeTable", e))?;
        let table = out.table.ok_or_else(|| anyhow!("table {name} vanished"))?;
        let table_active = table.table_status() == Some(&TableStatus::Active);
        let indexes_active = table
            .global_secondary_indexes()
            .iter()
            .all(|g| g.index_status().is_none_or(|s| *s == IndexStatus::Active));
        if table_active && indexes_active {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("table {name} is not ACTIVE after {timeout:?}; run migrate again later");
        }
        if !said {
            step(format!("table {name}: waiting until ACTIVE"));
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn apply_ttl(
    aws: &AwsBackend,
    name: &str,
    ttl: &Ttl,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let ddb = aws.dynamodb();
    let out = ddb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| classify("dynamodb.DescribeTimeToLive", e))?;
    let desc = out.time_to_live_description();
    let status = desc.and_then(|d| d.time_to_live_status());
    let attr = desc.and_then(|d| d.attribute_name());
    let enabled = matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if ttl.enabled && enabled && attr == Some(ttl.attribute_name.as_str()) {
        step(format!(
            "table {name}: TTL on {} already enabled",
            ttl.attribute_name
        ));
        return Ok(());
    }
    if ttl.enabled && enabled {
        bail!(
            "table {name} has TTL on {}, but {} is required; disable it first (DynamoDB allows one TTL attribute)",
            attr.unwrap_or("?"),
            ttl.attribute_name
        );
    }
    if !ttl.enabled {
        return Ok(());
    }
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(&ttl.attribute_name)
                .enabled(true)
                .build()?,
        )
        .send()
        .await
        .map_err(|e| classify("dynamodb.UpdateTimeToLive", e))
        .with_context(|| format!("cannot enable TTL on {name}"))?;
    step(format!(
        "table {name}: TTL on {} enabled",
        ttl.attribute_name
    ));
    Ok(())
}

/// Queue attributes as SQS wants them: strings, with `{"ref": LogicalId}`
/// replaced by that queue's ARN.
fn queue_attributes(
    props: &Value,
    queues: &HashMap<String, (String, String)>,
) -> Result<HashMap<String, String>> {
    let obj = props
        .as_object()
        .ok_or_else(|| anyhow!("queue properties must be an object"))?;
    let mut out = HashMap::new();
    for (k, v) in obj {
        if k == "QueueName" {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Object(_) => resolve_refs(v, queues)?.to_string(),
            other => bail!("queue attribute {k} has unsupported value {other}"),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

fn resolve_refs(v: &Value, queues: &HashMap<String, (String, String)>) -> Result<Value> {
    Ok(match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("ref") => {
            let id = m["ref"].as_str().unwrap_or_default();
            let (_, arn) = queues
                .get(id)
                .ok_or_else(|| anyhow!("ref to {id}, which is not defined before it"))?;
            Value::String(arn.clone())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_refs(v, queues)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// Compares attribute values the way SQS normalises them (JSON policies by
/// content, not by text).
fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(Value::Object(x)), Ok(Value::Object(y))) => {
            let norm = |m: serde_json::Map<String, Value>| -> HashMap<String, String> {
                m.into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            };
            norm(x) == norm(y)
        }
        _ => false,
    }
}

/// Attributes that exist only at creation time.
const CREATE_ONLY: &[&str] = &["FifoQueue"];

async fn apply_queue(
    aws: &AwsBackend,
    name: &str,
    props: &Value,
    queues: &HashMap<String, (String, String)>,
    step: &mut impl FnMut(String),
) -> Result<(String, String)> {
    let sqs = aws.sqs();
    let want = queue_attributes(props, queues)?;
    let existing = match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url().map(str::to_owned),
        Err(e) => {
            let e = classify("sqs.GetQueueUrl", e);
            if e.kind != ErrorKind::NotFound {
                return Err(e).with_context(|| format!("cannot look up queue {name}"));
            }
            None
        }
    };
    let url = match existing {
        None => {
            let out = sqs
                .create_queue()
                .queue_name(name)
                .set_attributes(Some(
                    want.iter()
                        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
                        .collect(),
                ))
                .send()
                .await
                .map_err(|e| classify("sqs.CreateQueue", e))
                .with_context(|| format!("cannot create queue {name}"))?;
            step(format!("queue {name}: created"));
            out.queue_url()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("CreateQueue returned no URL for {name}"))?
        }
        Some(url) => {
            let have = queue_attrs(aws, &url).await?;
            let mut changes = HashMap::new();
            for (k, v) in &want {
                if have.get(k).is_some_and(|h| same_value(h, v)) {
                    continue;
                }
                if CREATE_ONLY.contains(&k.as_str()) {
                    bail!(
                        "queue {name} exists with {k}={:?}, but {v} is required; use another queue name",
                        have.get(k)
                    );
                }
                changes.insert(QueueAttributeName::from(k.as_str()), v.clone());
            }
            if changes.is_empty() {
                step(format!("queue {name}: exists, attributes up to date"));
            } else {
                let mut keys: Vec<&str> = changes.keys().map(|k| k.as_str()).collect();
                keys.sort_unstable();
                let keys = keys.join(", ");
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(changes))
                    .send()
                    .await
                    .map_err(|e| classify("sqs.SetQueueAttributes", e))
                    .with_context(|| format!("cannot update queue {name}"))?;
                step(format!("queue {name}: updated {keys}"));
            }
            url
        }
    };
    let arn = queue_attrs(aws, &url)
        .await?
        .remove("QueueArn")
        .ok_or_else(|| anyhow!("queue {name} has no QueueArn"))?;
    Ok((url, arn))
}

async fn queue_attrs(aws: &AwsBackend, url: &str) -> Result<HashMap<String, String>> {
    let out = aws
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| classify("sqs.GetQueueAttributes", e))
        .with_context(|| format!("cannot read attributes of {url}"))?;
    Ok(out
        .attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_the_migrations_names() {
        let names = Names::default();
        for m in migrations().unwrap() {
            let key = if m.kind == "dynamodb_table" {
                "TableName"
            } else {
                "QueueName"
            };
            assert_eq!(
                names.for_logical_id(&m.logical_id),
                m.properties[key].as_str(),
                "{}",
                m.logical_id
            );
        }
    }

    #[test]
    fn embedded_migrations_parse_and_cover_every_resource() {
        let ms = migrations().unwrap();
        let ids: Vec<&str> = ms.iter().map(|m| m.logical_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "ConnectionsTable",
                "MessagesTable",
                "InboundDeadLetterQueue",
                "InboundQueue"
            ]
        );
        for m in &ms {
            if m.kind == "dynamodb_table" {
                let _: TableProps = serde_json::from_value(m.properties.clone()).unwrap();
            }
        }
    }

    #[test]
    fn embedded_list_matches_the_directory() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect();
        on_disk.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded, "add new migrations/ files to MIGRATIONS");
    }

    #[test]
    fn redrive_ref_resolves_to_the_dlq_arn() {
        let queues = HashMap::from([(
            "InboundDeadLetterQueue".to_owned(),
            (
                "http://q/dlq.fifo".to_owned(),
                "arn:aws:sqs:us-east-1:1:dlq.fifo".to_owned(),
            ),
        )]);
        let ms = migrations().unwrap();
        let inbound = ms.iter().find(|m| m.logical_id == "InboundQueue").unwrap();
        let attrs = queue_attributes(&inbound.properties, &queues).unwrap();
        let policy: Value = serde_json::from_str(&attrs["RedrivePolicy"]).unwrap();
        assert_eq!(
            policy["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:1:dlq.fifo"
        );
        assert_eq!(policy["maxReceiveCount"], 5);
        assert_eq!(attrs["FifoQueue"], "true");
        assert!(!attrs.contains_key("QueueName"));
    }

    #[test]
    fn policies_compare_by_content() {
        assert!(same_value(
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":5}"#,
            r#"{"maxReceiveCount":"5","deadLetterTargetArn":"a"}"#
        ));
        assert!(!same_value(
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":4}"#
        ));
        assert!(same_value("30", "30"));
    }
}

//! The definitions in `migrations/`: the tables and queues Switchboard needs,
//! in CloudFormation property names, and the names they get per deployment.
//! Read by `switchboard migrate` on AWS (`ops::migrate`) and by the embedded
//! store (`backend::embedded`), which is why they live below both.

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// The migration files, embedded so the binary works from any directory.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_connections_table.json",
        include_str!("../migrations/0001_connections_table.json"),
    ),
    (
        "0002_messages_table.json",
        include_str!("../migrations/0002_messages_table.json"),
    ),
    (
        "0003_inbound_dlq.json",
        include_str!("../migrations/0003_inbound_dlq.json"),
    ),
    (
        "0004_inbound_queue.json",
        include_str!("../migrations/0004_inbound_queue.json"),
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
}

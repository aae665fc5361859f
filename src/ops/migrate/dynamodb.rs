//! The DynamoDB half of `switchboard migrate`: creates a table with its GSIs,
//! or checks an existing one's key schema and adds the GSIs it lacks (one per
//! UpdateTable call, as DynamoDB requires), waits until everything is ACTIVE,
//! then enables TTL.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use serde::Deserialize;

use crate::backend::ErrorKind;
use crate::backend::aws::{AwsBackend, classify};

/// A `dynamodb_table` migration's properties (the subset we apply).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TableProps {
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

/// The attribute names a key schema uses (each needs an attribute definition).
fn key_attributes(keys: &[KeyElem]) -> impl Iterator<Item = &str> {
    keys.iter().map(|k| k.attribute_name.as_str())
}

fn projection(g: &Gsi) -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::from(g.projection.projection_type.as_str()))
        .build()
}

fn gsi(g: &Gsi) -> Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(&g.index_name)
        .set_key_schema(Some(key_schema(&g.key_schema)?))
        .projection(projection(g))
        .build()?)
}

/// Creates table `name` or brings an existing one in line, then its TTL.
pub(super) async fn apply_table(
    aws: &AwsBackend,
    name: &str,
    props: &TableProps,
    timeout: Duration,
    step: &mut impl FnMut(String),
) -> Result<()> {
    match describe(aws, name).await? {
        None => create_table(aws, name, props, timeout, step).await?,
        Some(table) => {
            check_key_schema(&table, name, props)?;
            step(format!("table {name}: exists"));
            add_missing_gsis(aws, &table, name, props, timeout, step).await?;
        }
    }
    if let Some(ttl) = &props.time_to_live_specification {
        apply_ttl(aws, name, ttl, step).await?;
    }
    Ok(())
}

/// The table's description, or `None` if there is no such table.
async fn describe(aws: &AwsBackend, name: &str) -> Result<Option<TableDescription>> {
    match aws
        .dynamodb()
        .describe_table()
        .table_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.table),
        Err(e) => {
            let e = classify("dynamodb.DescribeTable", e);
            if e.kind != ErrorKind::NotFound {
                return Err(e).with_context(|| format!("cannot read table {name}"));
            }
            Ok(None)
        }
    }
}

async fn create_table(
    aws: &AwsBackend,
    name: &str,
    props: &TableProps,
    timeout: Duration,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let mut used: Vec<&str> = key_attributes(&props.key_schema).collect();
    for g in &props.global_secondary_indexes {
        used.extend(key_attributes(&g.key_schema));
    }
    let gsis = props
        .global_secondary_indexes
        .iter()
        .map(gsi)
        .collect::<Result<Vec<_>>>()?;
    aws.dynamodb()
        .create_table()
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
    wait_active(aws, name, timeout, step).await
}

/// A key schema cannot be changed in place: a different one is an error.
fn check_key_schema(table: &TableDescription, name: &str, props: &TableProps) -> Result<()> {
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
    Ok(())
}

async fn add_missing_gsis(
    aws: &AwsBackend,
    table: &TableDescription,
    name: &str,
    props: &TableProps,
    timeout: Duration,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let have: Vec<&str> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|g| g.index_name())
        .collect();
    for g in &props.global_secondary_indexes {
        if have.contains(&g.index_name.as_str()) {
            step(format!("table {name}: GSI {} exists", g.index_name));
            continue;
        }
        let used: Vec<&str> = key_attributes(&g.key_schema).collect();
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(&g.index_name)
            .set_key_schema(Some(key_schema(&g.key_schema)?))
            .projection(projection(g))
            .build()?;
        // DynamoDB creates one GSI per UpdateTable call.
        aws.dynamodb()
            .update_table()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::migrations;

    #[test]
    fn every_table_migration_parses() {
        for m in migrations().unwrap() {
            if m.kind == "dynamodb_table" {
                let props: TableProps = serde_json::from_value(m.properties.clone()).unwrap();
                assert!(!props.key_schema.is_empty(), "{}", m.logical_id);
            }
        }
    }
}

//! `switchboard migrate` on moto: creates everything, is safe to run twice,
//! repairs drift (a missing GSI, a changed queue attribute), prints the URLs.
#![cfg(feature = "aws-tests")]

mod support;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use support::aws;
use switchboard::ops::migrate;

#[tokio::test]
async fn creates_everything_then_reports_no_changes_on_a_second_run() {
    let backend = aws::backend().await;
    let names = aws::names("mig");
    let first = migrate::run(&backend, &names, std::time::Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let created: Vec<_> = first
        .steps
        .iter()
        .filter(|s| s.contains("created"))
        .collect();
    assert_eq!(created.len(), 4, "{:#?}", first.steps);

    let ddb = backend.dynamodb();
    let table = ddb
        .describe_table()
        .table_name(&names.connections_table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let mut gsis: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| g.index_name().unwrap().to_owned())
        .collect();
    gsis.sort();
    assert_eq!(gsis, ["bySession", "byUser"]);
    for t in [&names.connections_table, &names.messages_table] {
        let ttl = ddb
            .describe_time_to_live()
            .table_name(t)
            .send()
            .await
            .unwrap();
        let d = ttl.time_to_live_description().unwrap();
        assert_eq!(d.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
        assert_eq!(d.attribute_name(), Some("expiresAt"));
    }
    let attrs = backend
        .sqs()
        .get_queue_attributes()
        .queue_url(&first.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes().unwrap();
    assert_eq!(a[&QueueAttributeName::FifoQueue], "true");
    let policy: serde_json::Value =
        serde_json::from_str(&a[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert!(
        policy["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(&names.dlq)
    );
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");

    let second = migrate::run(&backend, &names, std::time::Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(second.queue_url, first.queue_url);
    assert_eq!(second.dlq_url, first.dlq_url);
    assert!(
        second
            .steps
            .iter()
            .all(|s| !s.contains("created") && !s.contains("updated")),
        "second run changes nothing: {:#?}",
        second.steps
    );
}

#[tokio::test]
async fn repairs_a_missing_gsi_and_drifted_queue_attributes() {
    let backend = aws::backend().await;
    let names = aws::names("drift");
    // A connections table made by hand, without the byUser index and TTL.
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |n: &str| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(KeyType::Hash)
            .build()
            .unwrap()
    };
    backend
        .dynamodb()
        .create_table()
        .table_name(&names.connections_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("connectionId"))
        .attribute_definitions(attr("sessionId"))
        .key_schema(key("connectionId"))
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name("bySession")
                .key_schema(key("sessionId"))
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let first = migrate::run(&backend, &names, std::time::Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert!(
        first
            .steps
            .iter()
            .any(|s| s.ends_with("GSI byUser created")),
        "{:#?}",
        first.steps
    );
    assert!(
        first
            .steps
            .iter()
            .any(|s| s.contains("TTL on expiresAt enabled"))
    );

    backend
        .sqs()
        .set_queue_attributes()
        .queue_url(&first.queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "99")
        .send()
        .await
        .unwrap();
    let second = migrate::run(&backend, &names, std::time::Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert!(
        second
            .steps
            .iter()
            .any(|s| s.contains("updated VisibilityTimeout")),
        "{:#?}",
        second.steps
    );
    let attrs = backend
        .sqs()
        .get_queue_attributes()
        .queue_url(&first.queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs.attributes().unwrap()[&QueueAttributeName::VisibilityTimeout],
        "30"
    );
}

#[tokio::test]
async fn the_binary_prints_each_step_and_the_queue_urls() {
    let names = aws::names("bin");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("migrate")
        .env("AWS_ENDPOINT_URL", aws::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SWITCHBOARD_CONNECTIONS_TABLE", &names.connections_table)
        .env("SWITCHBOARD_MESSAGES_TABLE", &names.messages_table)
        .env("SWITCHBOARD_QUEUE_NAME", &names.queue)
        .env("SWITCHBOARD_DLQ_NAME", &names.dlq)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("table {}: created", names.connections_table)),
        "{stdout}"
    );
    let url_line = stdout
        .lines()
        .find(|l| l.starts_with("SWITCHBOARD_QUEUE_URL="))
        .expect("queue URL line");
    assert!(url_line.ends_with(&names.queue), "{url_line}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("SWITCHBOARD_DLQ_URL=") && l.ends_with(&names.dlq))
    );
}

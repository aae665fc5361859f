//! The deployment files agree with the code and with each other: every JSON
//! file parses; `deploy/template.json` defines the tables and queues exactly as
//! `migrations/` does; the worker's environment in `ecs/` and in the template
//! uses real `SWITCHBOARD_*` variables of `switchboard worker`; each Lambda
//! function gets exactly the variables (and IAM actions) its binary reads and
//! they make a valid configuration; the task role
//! grants the same actions in both; timeouts and ports match the binary's
//! defaults. (cfn-lint checks the template against CloudFormation's schemas in
//! scripts/test.sh; this checks what a linter cannot know.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::CommandFactory;
use serde_json::{Value, json};
use switchboard::cli::{Cli, duration};
use switchboard::lambda::{Function, FunctionConfig, LambdaEnv, config};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

fn json_files(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// The placeholders the deploy guide (docs/operations.md) tells users to set.
const PLACEHOLDERS: &[&str] = &[
    "AWS_REGION",
    "AWS_ACCOUNT_ID",
    "IMAGE",
    "API_ID",
    "STAGE",
    "SUBNET_A",
    "SUBNET_B",
    "SECURITY_GROUP",
];

fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let tail = &rest[i + 2..];
        let end = tail.find('}').expect("unclosed ${");
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_deployment_json_file_parses_and_uses_only_documented_placeholders() {
    let ecs = json_files("ecs");
    assert_eq!(
        ecs,
        [
            "ecs/autoscaling.json",
            "ecs/execution-role-policy.json",
            "ecs/service.json",
            "ecs/task-definition.json",
            "ecs/task-role-policy.json",
            "ecs/task-trust-policy.json",
        ]
    );
    for rel in &ecs {
        read_json(rel);
        let text = std::fs::read_to_string(root().join(rel)).unwrap();
        for p in placeholders(&text) {
            assert!(
                PLACEHOLDERS.contains(&p.as_str()),
                "{rel} uses ${{{p}}}, which docs/operations.md does not list"
            );
        }
        // What envsubst produces must still be JSON (no placeholder in a number).
        let mut filled = text.clone();
        for p in PLACEHOLDERS {
            filled = filled.replace(&format!("${{{p}}}"), "x-1");
        }
        serde_json::from_str::<Value>(&filled)
            .unwrap_or_else(|e| panic!("{rel} after substitution: {e}"));
    }
    for rel in json_files("deploy") {
        read_json(&rel);
    }
}

/// `{"Fn::Sub": "${Prefix}-x"}` with the template's default Prefix.
fn resolve_name(v: &Value, prefix: &str) -> Value {
    match v.get("Fn::Sub").and_then(Value::as_str) {
        Some(s) => Value::String(s.replace("${Prefix}", prefix)),
        None => v.clone(),
    }
}

/// A template property in the migration's notation: GetAtt X.Arn ↔ {"ref": X}.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
            let parts = &m["Fn::GetAtt"];
            assert_eq!(parts[1], "Arn", "{v}");
            json!({ "ref": parts[0] })
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Template-only properties: settings `migrate` does not manage (and that do
/// not change what the code relies on).
const TEMPLATE_ONLY: &[&str] = &["PointInTimeRecoverySpecification"];

#[test]
fn template_tables_and_queues_match_migrations_field_by_field() {
    let template = read_json("deploy/template.json");
    let prefix = template["Parameters"]["Prefix"]["Default"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(prefix, "switchboard", "the default names of `migrate`");
    let migrations = switchboard::ops::migrate::migrations().unwrap();
    assert_eq!(migrations.len(), 4);
    for m in migrations {
        let res = &template["Resources"][&m.logical_id];
        assert!(res.is_object(), "template has no {}", m.logical_id);
        let want_type = match m.kind.as_str() {
            "dynamodb_table" => "AWS::DynamoDB::Table",
            "sqs_queue" => "AWS::SQS::Queue",
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(res["Type"], want_type, "{}", m.logical_id);
        let props = res["Properties"].as_object().unwrap();
        let want = m.properties.as_object().unwrap();
        let keys: BTreeSet<&String> = props
            .keys()
            .filter(|k| !TEMPLATE_ONLY.contains(&k.as_str()))
            .collect();
        assert_eq!(
            keys,
            want.keys().collect::<BTreeSet<_>>(),
            "{}: properties differ",
            m.logical_id
        );
        for (k, v) in want {
            let got = match k.as_str() {
                "TableName" | "QueueName" => resolve_name(&props[k], &prefix),
                _ => normalize(&props[k]),
            };
            assert_eq!(&got, v, "{}.{k}", m.logical_id);
        }
        if m.kind == "dynamodb_table" {
            assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
            assert_eq!(props["TimeToLiveSpecification"]["Enabled"], true);
            assert_eq!(
                props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
                "{}: PITR on",
                m.logical_id
            );
            assert_eq!(res["DeletionPolicy"], "Retain", "{}", m.logical_id);
        }
    }
}

/// Every environment variable `switchboard <sub>` reads.
fn cli_env_names(sub: &str) -> BTreeSet<String> {
    let cmd = Cli::command();
    let mut names: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let sub = cmd
        .get_subcommands()
        .find(|c| c.get_name() == sub)
        .unwrap_or_else(|| panic!("no subcommand {sub}"));
    names.extend(
        sub.get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned()),
    );
    names
}

fn env_of(container: &Value, name_key: &str, value_key: &str) -> BTreeMap<String, Value> {
    container[if name_key == "name" {
        "environment"
    } else {
        "Environment"
    }]
    .as_array()
    .unwrap()
    .iter()
    .map(|e| {
        (
            e[name_key].as_str().unwrap().to_owned(),
            e[value_key].clone(),
        )
    })
    .collect()
}

#[test]
fn worker_environment_uses_real_flags_in_ecs_and_template_alike() {
    let known = cli_env_names("worker");
    let td = read_json("ecs/task-definition.json");
    let ecs = &td["containerDefinitions"][0];
    let template = read_json("deploy/template.json");
    let cfn =
        &template["Resources"]["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let ecs_env = env_of(ecs, "name", "value");
    let cfn_env = env_of(cfn, "Name", "Value");
    assert_eq!(
        ecs_env.keys().collect::<Vec<_>>(),
        cfn_env.keys().collect::<Vec<_>>(),
        "ecs/task-definition.json and the template set different variables"
    );
    for name in ecs_env.keys().filter(|n| n.starts_with("SWITCHBOARD_")) {
        assert!(
            known.contains(name),
            "{name} is not read by `switchboard worker`"
        );
    }
    for required in [
        "SWITCHBOARD_QUEUE_URL",
        "SWITCHBOARD_CONNECTIONS_TABLE",
        "SWITCHBOARD_MESSAGES_TABLE",
        "SWITCHBOARD_LOG_FORMAT",
    ] {
        assert!(ecs_env.contains_key(required), "{required} missing");
    }
    // One worker serves every stage: the @connections endpoint comes from each
    // message (https://{domainName}/{stage}); a fixed one would post dev
    // connections to prod, get 410 and prune them.
    assert!(!ecs_env.contains_key("SWITCHBOARD_CALLBACK_URL"));
    assert_eq!(
        ecs_env["SWITCHBOARD_LOG_FORMAT"], "json",
        "CloudWatch gets JSON"
    );

    // ECS must wait longer than the worker's drain before it sends SIGKILL.
    let grace = duration(ecs_env["SWITCHBOARD_SHUTDOWN_GRACE"].as_str().unwrap()).unwrap();
    for (what, c, key) in [
        ("ecs", ecs, "stopTimeout"),
        ("template", cfn, "StopTimeout"),
    ] {
        let stop = c[key].as_u64().unwrap();
        assert!(
            stop > grace.as_secs() && stop <= 120,
            "{what}: stopTimeout {stop}s must exceed the {grace:?} grace (Fargate allows up to 120 s)"
        );
    }

    // The health check runs a real subcommand against the metrics port.
    let check = ecs["healthCheck"]["command"].as_array().unwrap();
    assert_eq!(check[0], "CMD", "exec form: the image has no shell");
    assert_eq!(check[1], "/usr/local/bin/switchboard");
    let sub = check[2].as_str().unwrap();
    assert!(Cli::command().find_subcommand(sub).is_some(), "{sub}");
    assert_eq!(cfn["HealthCheck"]["Command"], ecs["healthCheck"]["command"]);
    let port = ecs_env["SWITCHBOARD_METRICS_ADDR"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(port, "9464");
    assert_eq!(ecs["portMappings"][0]["containerPort"], 9464);
    assert_eq!(cfn["PortMappings"][0]["ContainerPort"], 9464);
    assert_eq!(ecs["dockerLabels"], cfn["DockerLabels"]);
    assert_eq!(ecs["dockerLabels"]["ECS_PROMETHEUS_EXPORTER_PORT"], "9464");

    // The Dockerfile agrees: same port, same signal, same default command.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in [
        "EXPOSE 9464",
        "STOPSIGNAL SIGTERM",
        r#"ENTRYPOINT ["switchboard"]"#,
        r#"CMD ["worker"]"#,
    ] {
        assert!(
            dockerfile.lines().any(|l| l.trim() == line),
            "Dockerfile lacks `{line}`"
        );
    }
    assert!(!dockerfile.contains("HEALTHCHECK "), "ECS checks health");
}

fn actions_by_sid(statements: &Value) -> BTreeMap<String, BTreeSet<String>> {
    statements
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let actions = match &s["Action"] {
                Value::String(a) => BTreeSet::from([a.clone()]),
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                other => panic!("Action {other}"),
            };
            (s["Sid"].as_str().unwrap().to_owned(), actions)
        })
        .collect()
}

#[test]
fn task_role_is_the_same_least_privilege_policy_in_both_places() {
    let ecs = read_json("ecs/task-role-policy.json");
    let template = read_json("deploy/template.json");
    let cfn =
        &template["Resources"]["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let ecs_actions = actions_by_sid(&ecs["Statement"]);
    assert_eq!(ecs_actions, actions_by_sid(&cfn["Statement"]));
    // No wildcards in actions; resources are named.
    for (sid, actions) in &ecs_actions {
        assert!(actions.iter().all(|a| !a.contains('*')), "{sid}");
    }
    for s in ecs["Statement"].as_array().unwrap() {
        assert!(s["Resource"] != "*", "{}", s["Sid"]);
    }
    assert_eq!(
        ecs_actions["ConsumeInboundQueue"],
        BTreeSet::from(
            [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl"
            ]
            .map(String::from)
        )
    );
    // The worker sends the leave of a connection it prunes to the inbound
    // queue (docs/envelope.md, join and leave events).
    assert_eq!(
        ecs_actions["EnqueuePrunedLeaves"],
        BTreeSet::from(["sqs:SendMessage".to_owned()])
    );
    let connections = ecs["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "PostToConnections")
        .unwrap();
    assert_eq!(
        connections["Resource"],
        "arn:aws:execute-api:${AWS_REGION}:${AWS_ACCOUNT_ID}:${API_ID}/${STAGE}/POST/@connections/*"
    );
}

#[test]
fn websocket_api_routes_and_lambda_functions_are_wired() {
    let t = read_json("deploy/template.json");
    let r = t["Resources"].as_object().unwrap();
    let of_type = |ty: &str| -> Vec<&Value> { r.values().filter(|v| v["Type"] == ty).collect() };
    let api = &r["WebSocketApi"]["Properties"];
    assert_eq!(api["ProtocolType"], "WEBSOCKET");
    assert_eq!(api["RouteSelectionExpression"], "$request.body.action");
    let routes: BTreeSet<String> = of_type("AWS::ApiGatewayV2::Route")
        .iter()
        .map(|v| v["Properties"]["RouteKey"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        routes,
        [
            "$connect",
            "$default",
            "$disconnect",
            "direct",
            "history",
            "presence",
            "resume",
            "sendMessage"
        ]
        .map(String::from)
        .into()
    );
    let authorizer = &r["ConnectAuthorizer"]["Properties"];
    assert_eq!(authorizer["AuthorizerType"], "REQUEST");
    assert_eq!(
        authorizer["IdentitySource"],
        json!(["route.request.querystring.token"])
    );
    assert_eq!(
        r["ConnectRoute"]["Properties"]["AuthorizationType"],
        "CUSTOM"
    );
    assert_eq!(
        r["DefaultRouteResponse"]["Properties"]["RouteId"],
        json!({ "Ref": "DefaultRoute" })
    );
    let stages: BTreeSet<String> = of_type("AWS::ApiGatewayV2::Stage")
        .iter()
        .map(|v| v["Properties"]["StageName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stages, ["dev", "prod"].map(String::from).into());
    // Five functions, one binary each, provided.al2023 on arm64, each
    // invokable by API Gateway.
    let functions = of_type("AWS::Lambda::Function");
    assert_eq!(functions.len(), 5);
    for f in &functions {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023");
        assert_eq!(p["Architectures"], json!(["arm64"]));
        assert_eq!(p["Handler"], "bootstrap");
    }
    assert_eq!(of_type("AWS::Lambda::Permission").len(), 5);
}

/// The binary a function's zip holds (`${LambdaCodePrefix}/<binary>.zip`).
fn function_of(resource: &Value) -> Function {
    let key = resource["Properties"]["Code"]["S3Key"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let binary = key
        .strip_prefix("${LambdaCodePrefix}/")
        .and_then(|k| k.strip_suffix(".zip"))
        .unwrap_or_else(|| panic!("S3Key {key}"));
    Function::ALL
        .into_iter()
        .find(|f| f.binary() == binary)
        .unwrap_or_else(|| panic!("no binary {binary}"))
}

/// A function's environment as CloudFormation would set it for `params`
/// (parameter values; the others at their defaults): `Ref` of a parameter,
/// of a table (its name) or of a queue (its URL), `Fn::Join` of a list.
fn resolved_env(
    template: &Value,
    resource: &Value,
    params: &BTreeMap<&str, Value>,
) -> Vec<(String, String)> {
    let prefix = template["Parameters"]["Prefix"]["Default"]
        .as_str()
        .unwrap();
    let param = |name: &str| -> Value {
        params
            .get(name)
            .cloned()
            .or_else(|| template["Parameters"][name].get("Default").cloned())
            .unwrap_or_else(|| panic!("parameter {name} has no default: give it"))
    };
    let value = |v: &Value| -> String {
        if let Some(s) = v.as_str() {
            return s.to_owned();
        }
        if let Some(name) = v["Ref"].as_str() {
            let r = &template["Resources"][name];
            return match r["Type"].as_str() {
                Some("AWS::DynamoDB::Table") => resolve_name(&r["Properties"]["TableName"], prefix)
                    .as_str()
                    .unwrap()
                    .to_owned(),
                Some("AWS::SQS::Queue") => format!(
                    "https://sqs.eu-west-1.amazonaws.com/123456789012/{}",
                    resolve_name(&r["Properties"]["QueueName"], prefix)
                        .as_str()
                        .unwrap()
                ),
                Some(other) => panic!("Ref to a {other}"),
                None => param(name).as_str().unwrap().to_owned(),
            };
        }
        let join = v["Fn::Join"].as_array().expect("Ref, Fn::Join or a string");
        let list = param(join[1]["Ref"].as_str().unwrap());
        let items: Vec<&str> = match &list {
            Value::String(s) => s.split(',').collect(),
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
            other => panic!("{other}"),
        };
        items.join(join[0].as_str().unwrap())
    };
    resource["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect()
}

/// The IAM actions a role's inline policies allow on resource `target`.
fn allowed_on(role: &Value, target: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in role["Properties"]["Policies"]
        .as_array()
        .unwrap_or(&Vec::new())
    {
        for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            assert_eq!(s["Effect"], "Allow");
            if s["Resource"]["Fn::GetAtt"][0] != target {
                continue;
            }
            match &s["Action"] {
                Value::String(a) => {
                    out.insert(a.clone());
                }
                Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_owned())),
                other => panic!("Action {other}"),
            }
        }
    }
    out
}

#[test]
fn each_function_gets_exactly_the_environment_and_permissions_its_binary_reads() {
    let t = read_json("deploy/template.json");
    let r = t["Resources"].as_object().unwrap();
    let functions: BTreeMap<&str, &Value> = r
        .iter()
        .filter(|(_, v)| v["Type"] == "AWS::Lambda::Function")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let by_function: BTreeMap<&str, Function> = functions
        .iter()
        .map(|(k, v)| (*k, function_of(v)))
        .collect();
    let mut binaries: Vec<&str> = by_function.values().map(|f| f.binary()).collect();
    binaries.sort();
    let mut all: Vec<&str> = Function::ALL.iter().map(|f| f.binary()).collect();
    all.sort();
    assert_eq!(binaries, all, "one function per binary");

    // Both documented authorizer setups give a valid configuration: Cognito
    // (RS256 + JWKS URL) and a shared secret (HS256). The template's Rules
    // refuse the parameter sets the binary would refuse at init.
    let cognito: BTreeMap<&str, Value> = [
        ("AuthIssuer", json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE")),
        ("AuthAudience", json!("client-a,client-b")),
        (
            "AuthJwksUrl",
            json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE/.well-known/jwks.json"),
        ),
    ]
    .into();
    let mut shared_secret = cognito.clone();
    shared_secret.insert("AuthAlgorithms", json!(["HS256"]));
    shared_secret.insert("AuthJwksUrl", json!(""));
    shared_secret.insert("AuthSecret", json!("0123456789abcdef0123456789abcdef"));
    for params in [&cognito, &shared_secret] {
        for (id, resource) in &functions {
            let function = by_function[id];
            let vars = resolved_env(&t, resource, params);
            let names: BTreeSet<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
            // Every variable the binary reads is set explicitly, none other.
            let mut expected: BTreeSet<&str> = function.env_vars().into_iter().collect();
            expected.insert("RUST_LOG");
            assert_eq!(names, expected, "{id} ({})", function.binary());
            let env = LambdaEnv::from_pairs(vars.clone());
            let config = FunctionConfig::from_env(function, &env)
                .unwrap_or_else(|e| panic!("{id} would fail its init: {}", e.0));
            let vars: BTreeMap<String, String> = vars.into_iter().collect();
            assert_eq!(
                vars["SWITCHBOARD_LOG_FORMAT"], "json",
                "{id}: CloudWatch gets JSON"
            );
            if let FunctionConfig::Edge(c) = config {
                if let Some(table) = &c.connections_table {
                    assert_eq!(table, "switchboard-connections", "{id}");
                }
                if let Some(url) = &c.queue_url {
                    assert!(url.ends_with("/switchboard-inbound.fifo"), "{id}: {url}");
                }
            }
        }
    }

    // The authorizer reads the token where API Gateway requires it, and gets
    // every authorizer parameter of the template.
    let auth_env = &r["AuthorizerFunction"]["Properties"]["Environment"]["Variables"];
    let sources: Vec<&str> = r["ConnectAuthorizer"]["Properties"]["IdentitySource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(auth_env[config::auth::IDENTITY_SOURCES], sources.join(","));
    let referenced = auth_env.to_string();
    for name in t["Parameters"].as_object().unwrap().keys() {
        if name.starts_with("Auth") {
            assert!(
                referenced.contains(&format!("\"{name}\"")),
                "parameter {name} does not reach the authorizer"
            );
        }
    }
    // $default lists exactly the API's custom routes.
    let mut custom: Vec<String> = r
        .values()
        .filter(|v| v["Type"] == "AWS::ApiGatewayV2::Route")
        .map(|v| v["Properties"]["RouteKey"].as_str().unwrap().to_owned())
        .filter(|k| !k.starts_with('$'))
        .collect();
    custom.sort();
    let default_env = &r["DefaultFunction"]["Properties"]["Environment"]["Variables"];
    let mut listed: Vec<String> = default_env[config::ACTIONS]
        .as_str()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(listed, custom);

    // Each function's role allows what its handler calls, and no more.
    let role = |f: &str| {
        &r[functions[f]["Properties"]["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap()]
    };
    let set = |a: &[&str]| {
        a.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    for (f, table, queue) in [
        (
            "ConnectFunction",
            set(&[
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
            ]),
            // Presence events ($join / $leave) go to the queue.
            set(&["sqs:SendMessage"]),
        ),
        (
            "DisconnectFunction",
            set(&[
                "dynamodb:PutItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
            ]),
            // Presence events ($join / $leave) go to the queue.
            set(&["sqs:SendMessage"]),
        ),
        (
            "SendFunction",
            set(&["dynamodb:GetItem"]),
            set(&["sqs:SendMessage"]),
        ),
        ("DefaultFunction", set(&[]), set(&[])),
        ("AuthorizerFunction", set(&[]), set(&[])),
    ] {
        assert_eq!(allowed_on(role(f), "ConnectionsTable"), table, "{f}");
        assert_eq!(allowed_on(role(f), "InboundQueue"), queue, "{f}");
    }
}

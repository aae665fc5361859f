//! The REQUEST authorizer's input and output, in the JSON shape API Gateway
//! sends to (and expects from) a Lambda authorizer on a WebSocket `$connect`
//! (`tests/fixtures/apigw-ws-authorizer.json`), and the IAM policy evaluation
//! API Gateway applies to the answer.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::handlers::{RequestContext, RequestParameters, WebSocketEvent};

/// One REQUEST authorizer invocation: the `$connect` request's headers, query
/// string and context, plus `type` and `methodArn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerEvent {
    /// Always `REQUEST` for WebSocket APIs.
    #[serde(rename = "type")]
    pub kind: String,
    /// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect`.
    pub method_arn: String,
    /// Headers, query string and stage variables of the `$connect` request.
    #[serde(flatten)]
    pub request: RequestParameters,
    /// The `$connect` request context (connection id, stage, source IP, ...).
    pub request_context: RequestContext,
}

impl AuthorizerEvent {
    /// The authorizer event for a `$connect` proxy event, on `method_arn`.
    pub fn for_connect(event: &WebSocketEvent, method_arn: String) -> Self {
        let mut request_context = event.request_context.clone();
        // The authorizer runs before anyone vouched for the caller.
        request_context.authorizer = None;
        AuthorizerEvent {
            kind: "REQUEST".into(),
            method_arn,
            request: event.request.clone(),
            request_context,
        }
    }

    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// A query string parameter (names are case-sensitive, as on API Gateway).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.request.query(name)
    }
}

/// What the authorizer answers: who the caller is, an IAM policy allowing or
/// denying `execute-api:Invoke` on the method ARN, and the context that reaches
/// every later event of the connection as `requestContext.authorizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    /// The caller (e.g. the token's `sub`).
    pub principal_id: String,
    /// Allow or Deny on the method ARN.
    pub policy_document: PolicyDocument,
    /// String, number or boolean values only (API Gateway's rule).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    /// The API key of a usage plan, when the API selects keys with
    /// `$context.authorizer.usageIdentifierKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_identifier_key: Option<String>,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// `2012-10-17`.
    pub version: String,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One policy statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// `execute-api:Invoke` (wildcards allowed).
    pub action: OneOrMany,
    /// Allow or Deny.
    pub effect: Effect,
    /// Method ARNs (wildcards allowed).
    pub resource: OneOrMany,
}

/// A string or a list of strings, as IAM policies allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        };
        slice.iter().map(String::as_str)
    }
}

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Grants access.
    Allow,
    /// Refuses access; wins over any Allow.
    Deny,
}

impl PolicyDocument {
    /// A policy with one statement: `effect` on `execute-api:Invoke` for `method_arn`.
    pub fn single(effect: Effect, method_arn: &str) -> Self {
        PolicyDocument {
            version: "2012-10-17".into(),
            statement: vec![Statement {
                action: OneOrMany::One("execute-api:Invoke".into()),
                effect,
                resource: OneOrMany::One(method_arn.into()),
            }],
        }
    }

    /// Whether the policy lets the caller invoke `method_arn`: an explicit
    /// Deny wins, then any Allow; no matching statement denies (IAM's rules).
    pub fn allows(&self, method_arn: &str) -> bool {
        let applies = |s: &&Statement| {
            s.action
                .iter()
                .any(|a| wildcard_match(&a.to_ascii_lowercase(), "execute-api:invoke"))
                && s.resource.iter().any(|r| wildcard_match(r, method_arn))
        };
        let matching: Vec<&Statement> = self.statement.iter().filter(applies).collect();
        !matching.iter().any(|s| s.effect == Effect::Deny)
            && matching.iter().any(|s| s.effect == Effect::Allow)
    }
}

/// IAM wildcard matching: `*` is any run of characters, `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ARN));
        assert!(wildcard_match(ARN, ARN));
        assert!(wildcard_match(
            "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:*:*:a1b2c3d4e5/pro?/$connect",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/dev/*",
            ARN
        ));
        assert!(!wildcard_match("", ARN));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn deny_wins_and_nothing_matching_denies() {
        assert!(PolicyDocument::single(Effect::Allow, ARN).allows(ARN));
        assert!(!PolicyDocument::single(Effect::Deny, ARN).allows(ARN));
        let other = ARN.replace("/prod/", "/dev/");
        assert!(!PolicyDocument::single(Effect::Allow, &other).allows(ARN));
        let mut both = PolicyDocument::single(Effect::Allow, "*");
        both.statement
            .extend(PolicyDocument::single(Effect::Deny, ARN).statement);
        assert!(!both.allows(ARN));
        // Another action does not grant Invoke.
        let mut wrong = PolicyDocument::single(Effect::Allow, ARN);
        wrong.statement[0].action = OneOrMany::One("execute-api:ManageConnections".into());
        assert!(!wrong.allows(ARN));
        wrong.statement[0].action = OneOrMany::Many(vec!["execute-api:*".into()]);
        assert!(wrong.allows(ARN));
    }

    #[test]
    fn the_response_has_api_gateways_field_names() {
        let r = AuthorizerResponse {
            principal_id: "alice".into(),
            policy_document: PolicyDocument::single(Effect::Allow, ARN),
            context: serde_json::json!({"userId": "alice"})
                .as_object()
                .unwrap()
                .clone(),
            usage_identifier_key: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "principalId": "alice",
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow",
                        "Resource": ARN,
                    }]
                },
                "context": {"userId": "alice"}
            })
        );
    }
}

//! `direct`: the message to the connections named in `data.to`, within its session.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::backend::Connection;
use crate::envelope::{Envelope, MessageFrame};

use super::{ActionError, Actions, encode, log_report};

impl Actions {
    pub(super) async fn direct(&self, env: &Envelope, seq: Option<u64>) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let targets = DirectTargets::from_payload(&env.payload, self.settings.max_direct_targets)?;
        let frame = encode(&MessageFrame::from_envelope(env).with_seq(seq))?;
        let mut recipients: BTreeMap<String, Connection> = BTreeMap::new();
        for user in &targets.user_ids {
            let mut cursor = None;
            loop {
                let page = self
                    .connections()
                    .by_user(user, cursor)
                    .await
                    .map_err(ActionError::backend("direct"))?;
                for c in page.items {
                    if c.session_id == env.session_id {
                        recipients.insert(c.connection_id.clone(), c);
                    }
                }
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        for id in &targets.connection_ids {
            if recipients.contains_key(id) {
                continue;
            }
            let conn = self
                .connections()
                .get(id)
                .await
                .map_err(ActionError::backend("direct"))?;
            // Only connections of the same session: a client cannot reach into
            // other sessions by naming their connection ids.
            if let Some(c) = conn.filter(|c| c.session_id == env.session_id) {
                recipients.insert(c.connection_id.clone(), c);
            }
        }
        let recipients: Vec<Connection> = recipients.into_values().collect();
        let report = self
            .fanout
            .to_connections(&endpoint, recipients, frame)
            .await;
        log_report("direct", &report);
        Ok(())
    }
}

/// `data.to` of a `direct` message.
#[derive(Debug, Default, PartialEq, Eq)]
struct DirectTargets {
    user_ids: Vec<String>,
    connection_ids: Vec<String>,
}

impl DirectTargets {
    fn from_payload(payload: &Value, max: usize) -> Result<Self, ActionError> {
        let bad = |m: &str| ActionError::bad("bad_request", m);
        let to = payload.get("to").ok_or_else(|| {
            bad("direct needs data.to = {\"userIds\": [...], \"connectionIds\": [...]}")
        })?;
        let list = |key: &str| -> Result<Vec<String>, ActionError> {
            match to.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                bad(&format!("data.to.{key} must hold non-empty strings"))
                            })
                    })
                    .collect(),
                Some(_) => Err(bad(&format!("data.to.{key} must be an array of strings"))),
            }
        };
        let t = DirectTargets {
            user_ids: list("userIds")?,
            connection_ids: list("connectionIds")?,
        };
        let n = t.user_ids.len() + t.connection_ids.len();
        if n == 0 {
            return Err(bad("data.to names no userIds and no connectionIds"));
        }
        if n > max {
            return Err(bad(&format!(
                "data.to names {n} recipients; at most {max} are allowed"
            )));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_targets_parse_and_validate() {
        let t = DirectTargets::from_payload(
            &json!({"to": {"userIds": ["bob"], "connectionIds": ["c1", "c2"]}}),
            100,
        )
        .unwrap();
        assert_eq!(t.user_ids, ["bob"]);
        assert_eq!(t.connection_ids, ["c1", "c2"]);

        for (payload, text) in [
            (json!(null), "needs data.to"),
            (json!({"to": {}}), "names no userIds"),
            (json!({"to": {"userIds": "bob"}}), "must be an array"),
            (json!({"to": {"userIds": [1]}}), "non-empty strings"),
            (
                json!({"to": {"connectionIds": ["a", "b", "c"]}}),
                "at most 2",
            ),
        ] {
            let err = DirectTargets::from_payload(&payload, 2).unwrap_err();
            assert!(err.to_string().contains(text), "{payload}: {err}");
            assert!(!err.is_retriable());
            assert_eq!(err.kind(), "bad_request");
        }
    }
}

//! Which steps run for which route key: `sendMessage = store, broadcast` and so on.
//! Defaults from DESIGN.md; overridable with `--route KEY=STEP,...` or a routes file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::envelope::{JOIN_ACTION, LEAVE_ACTION};

/// One step of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Idempotent conditional put into the messages table.
    Store,
    /// To every connection of the session; optionally not to the sender.
    Broadcast {
        /// Leave the sender's own connection out.
        exclude_sender: bool,
    },
    /// To the connections named in `data.to` (userIds / connectionIds).
    Direct,
    /// An `ack` frame to the sender.
    Reply,
    /// The last N stored messages of the session, to the sender.
    History,
    /// The stored messages after the sender's last `seq`, to the sender.
    Resume,
    /// Who is in the session, to the sender.
    Presence,
    /// A `join` / `leave` frame to the session's other members (the
    /// `$join` / `$leave` events the edge enqueues).
    Announce,
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "store" => Step::Store,
            "broadcast" => Step::Broadcast {
                exclude_sender: false,
            },
            "broadcast:exclude-sender" => Step::Broadcast {
                exclude_sender: true,
            },
            "direct" => Step::Direct,
            "reply" => Step::Reply,
            "history" => Step::History,
            "resume" => Step::Resume,
            "presence" => Step::Presence,
            "announce" => Step::Announce,
            other => {
                return Err(format!(
                    "unknown step `{other}`: use store, broadcast, broadcast:exclude-sender, direct, reply, history, resume, presence or announce"
                ));
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Store => "store",
            Step::Broadcast {
                exclude_sender: false,
            } => "broadcast",
            Step::Broadcast {
                exclude_sender: true,
            } => "broadcast:exclude-sender",
            Step::Direct => "direct",
            Step::Reply => "reply",
            Step::History => "history",
            Step::Resume => "resume",
            Step::Presence => "presence",
            Step::Announce => "announce",
        })
    }
}

/// Route key → steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipelines {
    routes: BTreeMap<String, Vec<Step>>,
}

impl Default for Pipelines {
    fn default() -> Self {
        let broadcast = Step::Broadcast {
            exclude_sender: false,
        };
        Pipelines {
            routes: BTreeMap::from([
                ("sendMessage".to_owned(), vec![Step::Store, broadcast]),
                ("history".to_owned(), vec![Step::History]),
                ("whisper".to_owned(), vec![Step::Direct]),
                ("direct".to_owned(), vec![Step::Direct]),
                ("resume".to_owned(), vec![Step::Resume]),
                ("presence".to_owned(), vec![Step::Presence]),
                // Presence events from the edge's $connect / $disconnect.
                (JOIN_ACTION.to_owned(), vec![Step::Announce]),
                (LEAVE_ACTION.to_owned(), vec![Step::Announce]),
            ]),
        }
    }
}

impl Pipelines {
    /// No routes at all.
    pub fn empty() -> Self {
        Pipelines {
            routes: BTreeMap::new(),
        }
    }

    /// The steps for `action`, if it is a known route key.
    pub fn get(&self, action: &str) -> Option<&[Step]> {
        self.routes.get(action).map(Vec::as_slice)
    }

    /// The route's key as configured (a `'static`-free label for metrics) and
    /// its steps, if `action` is a known route key.
    pub fn route(&self, action: &str) -> Option<(&str, &[Step])> {
        self.routes
            .get_key_value(action)
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Known route keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Sets the steps of one route.
    pub fn set(&mut self, key: &str, steps: Vec<Step>) {
        self.routes.insert(key.to_owned(), steps);
    }

    /// Applies `KEY=STEP,STEP` (an empty step list removes the route).
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), String> {
        let (key, steps) = spec.split_once('=').ok_or_else(|| {
            format!(
                "route `{spec}` must look like KEY=STEP,STEP (e.g. sendMessage=store,broadcast)"
            )
        })?;
        let key = key.trim();
        if key.is_empty() || key.starts_with('$') {
            return Err(format!(
                "route `{spec}`: the key must be a custom route key, not empty or a $-route"
            ));
        }
        if steps.trim().is_empty() {
            self.routes.remove(key);
            return Ok(());
        }
        let steps = steps
            .split(',')
            .map(Step::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("route `{key}`: {e}"))?;
        self.set(key, steps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let p = Pipelines::default();
        assert_eq!(
            p.get("sendMessage").unwrap(),
            &[
                Step::Store,
                Step::Broadcast {
                    exclude_sender: false
                }
            ]
        );
        assert_eq!(p.get("history").unwrap(), &[Step::History]);
        assert_eq!(p.get("direct").unwrap(), &[Step::Direct]);
        assert_eq!(p.get("whisper").unwrap(), &[Step::Direct]);
        assert_eq!(p.get("resume").unwrap(), &[Step::Resume]);
        assert_eq!(p.get("presence").unwrap(), &[Step::Presence]);
        assert_eq!(p.get("$join").unwrap(), &[Step::Announce]);
        assert_eq!(p.get("$leave").unwrap(), &[Step::Announce]);
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn specs_add_replace_and_remove_routes() {
        let mut p = Pipelines::default();
        p.apply_spec("announce=broadcast:exclude-sender,reply")
            .unwrap();
        assert_eq!(
            p.get("announce").unwrap(),
            &[
                Step::Broadcast {
                    exclude_sender: true
                },
                Step::Reply
            ]
        );
        p.apply_spec("sendMessage=broadcast").unwrap();
        assert_eq!(p.get("sendMessage").unwrap().len(), 1);
        p.apply_spec("whisper=").unwrap();
        assert_eq!(p.get("whisper"), None);
    }

    #[test]
    fn bad_specs_say_what_to_fix() {
        let mut p = Pipelines::default();
        assert!(p.apply_spec("nokey").unwrap_err().contains("KEY=STEP"));
        assert!(
            p.apply_spec("x=store,shout")
                .unwrap_err()
                .contains("unknown step `shout`")
        );
        assert!(
            p.apply_spec("$default=reply")
                .unwrap_err()
                .contains("$-route")
        );
    }

    #[test]
    fn steps_display_as_they_parse() {
        for s in [
            "store",
            "broadcast",
            "broadcast:exclude-sender",
            "direct",
            "reply",
            "history",
            "resume",
            "presence",
            "announce",
        ] {
            assert_eq!(s.parse::<Step>().unwrap().to_string(), s);
        }
    }
}

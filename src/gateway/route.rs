//! Route selection: which route key a client frame is for, from the API's
//! `route_selection_expression`, as API Gateway evaluates it.
//!
//! Supported forms: `$request.body.<path>` (e.g. `$request.body.action`,
//! `$request.body.meta.kind`) and templates combining several paths with
//! literal text, e.g. `${request.body.type}/${request.body.op}`. A frame that is
//! not JSON, or lacks a path, selects nothing (the gateway then uses `$default`).

use serde_json::Value;

/// A parsed route selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body(Vec<String>),
}

const BODY: &str = "request.body.";

fn parse_path(path: &str, whole: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    let valid = |s: &String| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if segments.iter().all(valid) {
        Ok(segments)
    } else {
        Err(format!(
            "`{whole}` has an invalid JSON path `{path}`: use names separated by dots, e.g. $request.body.action"
        ))
    }
}

impl RouteSelection {
    /// Parses an expression; the error says what is wrong and what to write.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expr_trim = expr.trim();
        let mut parts = Vec::new();
        if let Some(path) = expr_trim
            .strip_prefix('$')
            .and_then(|r| r.strip_prefix(BODY))
            && !expr_trim.contains("${")
        {
            parts.push(Part::Body(parse_path(path, expr_trim)?));
            return Ok(RouteSelection {
                source: expr_trim.to_owned(),
                parts,
            });
        }
        let mut rest = expr_trim;
        while !rest.is_empty() {
            match rest.find("${") {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| {
                        format!(
                            "`{expr_trim}` has an unclosed `${{`: write ${{request.body.<path>}}"
                        )
                    })?;
                    let inner = &rest[2..end];
                    let path = inner.strip_prefix(BODY).ok_or_else(|| {
                        format!(
                            "`{expr_trim}`: only request.body paths can select routes on WebSocket APIs, \
                             e.g. ${{request.body.action}}"
                        )
                    })?;
                    parts.push(Part::Body(parse_path(path, expr_trim)?));
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    parts.push(Part::Literal(rest[..i].to_owned()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Body(_))) {
            return Err(format!(
                "`{expr_trim}` selects no part of the message: use $request.body.<path>, e.g. $request.body.action"
            ));
        }
        Ok(RouteSelection {
            source: expr_trim.to_owned(),
            parts,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The route key a frame selects, or `None` (not JSON, a path missing or
    /// not a scalar).
    pub fn select(&self, frame: &str) -> Option<String> {
        let body: Value = serde_json::from_str(frame).ok()?;
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => key.push_str(s),
                Part::Body(path) => key.push_str(&scalar(json_path(&body, path)?)?),
            }
        }
        Some(key)
    }
}

/// The value at `path` (object keys) inside `value`.
pub fn json_path<'a, S: AsRef<str>>(value: &'a Value, path: &[S]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, segment| v.as_object()?.get(segment.as_ref()))
}

/// A scalar as route-key text: strings as they are, numbers and booleans as
/// written; objects, arrays and null select nothing.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "$request.body.action",
                r#"{"action":"sendMessage"}"#,
                Some("sendMessage"),
            ),
            (
                "$request.body.action",
                r#"{"action":"x","data":{"action":"y"}}"#,
                Some("x"),
            ),
            ("$request.body.action", r#"{"data":1}"#, None),
            ("$request.body.action", "not json", None),
            ("$request.body.action", r#"["action"]"#, None),
            ("$request.body.action", r#"{"action":{"k":1}}"#, None),
            ("$request.body.action", r#"{"action":null}"#, None),
            ("$request.body.action", r#"{"action":7}"#, Some("7")),
            (
                "$request.body.meta.kind",
                r#"{"meta":{"kind":"chat"}}"#,
                Some("chat"),
            ),
            ("$request.body.meta.kind", r#"{"meta":"chat"}"#, None),
            (
                "$request.body.a.b.c",
                r#"{"a":{"b":{"c":true}}}"#,
                Some("true"),
            ),
            (
                "${request.body.type}/${request.body.op}",
                r#"{"type":"room","op":"join"}"#,
                Some("room/join"),
            ),
            (
                "${request.body.type}/${request.body.op}",
                r#"{"type":"room"}"#,
                None,
            ),
            ("v1:${request.body.m.n}", r#"{"m":{"n":"x"}}"#, Some("v1:x")),
        ];
        for (expr, frame, want) in cases {
            let sel = RouteSelection::parse(expr).unwrap();
            assert_eq!(sel.select(frame).as_deref(), *want, "{expr} on {frame}");
        }
    }

    #[test]
    fn bad_expressions_say_what_to_write() {
        for (expr, text) in [
            ("$request.header.x", "selects no part"),
            ("action", "selects no part"),
            ("${request.body.a", "unclosed"),
            ("${request.querystring.a}", "only request.body"),
            ("$request.body.", "invalid JSON path"),
            ("$request.body.a..b", "invalid JSON path"),
        ] {
            let e = RouteSelection::parse(expr).unwrap_err();
            assert!(e.contains(text), "{expr}: {e}");
        }
    }
}

//! The error every part returns for a bad flag, file or setting: exit code 2
//! with one line. A leaf: it depends on nothing else in the crate, so the
//! gateway, Lambda and ops configs can all use it.

/// A usage or configuration error: exit code 2, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A TOML error as ` line N: message`, one line.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim().replace('\n', " ");
    match line {
        Some(l) => format!(" line {l}: {message}"),
        None => format!(": {message}"),
    }
}

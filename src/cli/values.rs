//! The value parsers of the flags: durations, counts, addresses, queue URLs
//! and names. Each returns the one-line message a usage error prints.

use std::net::SocketAddr;
use std::time::Duration;

/// Durations like `500ms`, `25s`, `5m`, `2h`, `7d`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 500ms, 25s, 5m, 2h, 7d"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`: use ms, s, m, h or d"
            ));
        }
    })
}

pub(super) fn visibility(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    // SQS: 0 s to 12 h, in whole seconds; below 2 s the heartbeat cannot keep up.
    if d < Duration::from_secs(2) || d > Duration::from_secs(12 * 3600) {
        return Err(format!(
            "`{s}` must be between 2s and 12h (SQS visibility timeout limits)"
        ));
    }
    Ok(d)
}

/// `on` or `off`.
pub(super) fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}` is not on or off")),
    }
}

pub(super) fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

pub(super) fn positive_u32(s: &str) -> Result<u32, String> {
    let n = positive(s)?;
    u32::try_from(n).map_err(|_| format!("`{s}` is too large"))
}

pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an address: use IP:PORT, e.g. 0.0.0.0:9464"))
}

pub(super) fn http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{s}` has no host"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

pub(crate) fn fifo_queue_url(s: &str) -> Result<String, String> {
    if let Some(name) = s.strip_prefix("embedded://") {
        return fifo_name(name).map(|_| s.to_owned());
    }
    let url = http_url(s)?;
    if !url.ends_with(".fifo") {
        return Err(format!(
            "must be the URL of a FIFO queue, ending in .fifo: got {s}"
        ));
    }
    Ok(url)
}

pub(super) fn fifo_name(s: &str) -> Result<String, String> {
    let ok = s.ends_with(".fifo")
        && s.len() <= 80
        && s[..s.len() - 5]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(format!(
            "`{s}` is not a FIFO queue name: up to 80 letters, digits, - and _, ending in .fifo"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("25").unwrap(), Duration::from_secs(25));
        assert_eq!(duration("25s").unwrap(), Duration::from_secs(25));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(duration("5x").unwrap_err().contains("unknown unit"));
        assert!(duration("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn queue_urls_must_be_fifo() {
        assert!(fifo_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q.fifo").is_ok());
        let e = fifo_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q").unwrap_err();
        assert!(e.contains("ending in .fifo"), "{e}");
        assert!(
            fifo_queue_url("sqs/q.fifo")
                .unwrap_err()
                .contains("https://")
        );
    }
}

//! Token buckets on tokio's clock, the algorithm API Gateway throttles with:
//! a bucket of `burst` tokens refilled at `rate` per second, one token per
//! request. On tokio's clock, so tests drive refills with paused time.
//!
//! (Not the `governor` crate: it would add a second `hashbrown` to the build
//! and its own clock, which paused tokio time does not move.)

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::gateway::config::Throttle;

#[derive(Debug, Clone, Copy)]
struct State {
    tokens: f64,
    at: Instant,
}

impl State {
    fn full(limit: Throttle, now: Instant) -> Self {
        State {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Refills for the time since the last take, then takes one token or
    /// says how long until one is there.
    fn take(&mut self, limit: Throttle, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(f64::from(limit.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if limit.rate <= 0.0 || limit.burst == 0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / limit.rate))
    }

    /// Whether the bucket would be full now (it then says nothing a fresh
    /// bucket would not).
    fn is_full(&self, limit: Throttle, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * limit.rate >= f64::from(limit.burst)
    }
}

/// One token bucket, starting full.
#[derive(Debug)]
pub struct Bucket {
    limit: Throttle,
    state: Mutex<State>,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn new(limit: Throttle) -> Self {
        Bucket {
            limit,
            state: Mutex::new(State::full(limit, Instant::now())),
        }
    }

    /// Takes a token; `Err(wait)` when the bucket is empty.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut s = crate::sync::lock(&self.state);
        s.take(self.limit, Instant::now())
    }
}

/// Most keys a [`KeyedBuckets`] tracks; past it, full buckets are dropped,
/// and if none is full, new keys pass untracked (the stage's own bucket still
/// bounds them) rather than growing memory without bound.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key (a client address), created on first use.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    limit: Throttle,
    map: Mutex<HashMap<K, State>>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// Buckets of `limit`.
    pub fn new(limit: Throttle) -> Self {
        KeyedBuckets {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket.
    pub fn try_take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = crate::sync::lock(&self.map);
        if let Some(s) = map.get_mut(key) {
            return s.take(self.limit, now);
        }
        if map.len() >= MAX_KEYS {
            let limit = self.limit;
            map.retain(|_, s| !s.is_full(limit, now));
            if map.len() >= MAX_KEYS {
                return Ok(());
            }
        }
        let mut s = State::full(self.limit, now);
        let r = s.take(self.limit, now);
        map.insert(key.clone(), s);
        r
    }

    /// Keys tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        crate::sync::lock(&self.map).len()
    }
}

/// The key a client address is throttled under: IPv4 addresses one by one,
/// IPv6 by /64 (one subscriber's usual allocation, so that rotating through
/// it does not escape the limit).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: u32) -> Throttle {
        Throttle { rate, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b = Bucket::new(limit(2.0, 3));
        for _ in 0..3 {
            b.try_take().unwrap();
        }
        let wait = b.try_take().unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(b.try_take().is_err(), "not refilled yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        b.try_take().unwrap();
        assert!(b.try_take().is_err());
        // A long pause refills to the burst, no more.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            b.try_take().unwrap();
        }
        assert!(b.try_take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_limits_refuse_everything() {
        assert_eq!(
            Bucket::new(limit(0.0, 0)).try_take().unwrap_err(),
            Duration::MAX
        );
        let b = Bucket::new(limit(0.0, 1));
        b.try_take().unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(b.try_take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_buckets_are_independent_and_bounded() {
        let k = KeyedBuckets::new(limit(1.0, 1));
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        k.try_take(&a).unwrap();
        assert!(k.try_take(&a).is_err());
        k.try_take(&b).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        k.try_take(&a).unwrap();
        // Full buckets are dropped when the map is at its bound.
        tokio::time::advance(Duration::from_secs(10)).await;
        for i in 0..MAX_KEYS as u32 {
            let _ = k.try_take(&IpAddr::from(i.to_be_bytes()));
        }
        assert!(k.len() <= MAX_KEYS);
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }
}

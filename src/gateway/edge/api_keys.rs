//! API keys and usage plans, as API Gateway meters them: a key is looked up by
//! its SHA-256 among the keys of the plans that cover the stage; each key has
//! the plan's token bucket and a quota per calendar period (UTC), both counted
//! in memory (they restart with the gateway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::throttle::Bucket;
use crate::clock::year_month;
use crate::gateway::config::{GatewayConfig, KeyHash, Quota, QuotaPeriod};

const DAY_MS: i64 = 86_400_000;

/// Which period `ms` falls in, as a number that grows by one per period.
pub fn period_index(period: QuotaPeriod, ms: i64) -> i64 {
    let day = ms.div_euclid(DAY_MS);
    match period {
        QuotaPeriod::Day => day,
        // 1970-01-01 was a Thursday: shift so that weeks start on Monday.
        QuotaPeriod::Week => (day + 3).div_euclid(7),
        QuotaPeriod::Month => {
            let (y, m) = year_month(ms);
            y * 12 + i64::from(m) - 1
        }
    }
}

/// Why a key's request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// The plan's rate or burst is exceeded (429 Too Many Requests).
    Throttled,
    /// The quota of this period is used up (429 Limit Exceeded).
    OverQuota,
}

#[derive(Debug)]
struct QuotaCounter {
    quota: Quota,
    /// (period index, requests counted in it).
    used: Mutex<(i64, u64)>,
}

/// One key of one plan: its bucket and quota (shared by the plan's stages).
#[derive(Debug)]
pub struct KeyState {
    plan: String,
    bucket: Option<Bucket>,
    quota: Option<QuotaCounter>,
}

impl KeyState {
    /// The plan's name.
    pub fn plan(&self) -> &str {
        &self.plan
    }

    /// Counts one request at `now_ms`: refused when over quota or throttled;
    /// a refused request does not count against the quota.
    pub fn meter(&self, now_ms: i64) -> Result<(), Metered> {
        let Some(q) = &self.quota else {
            return self.throttle();
        };
        let period = period_index(q.quota.period, now_ms);
        let mut used = crate::sync::lock(&q.used);
        if used.0 != period {
            *used = (period, 0);
        }
        if used.1 >= q.quota.limit {
            return Err(Metered::OverQuota);
        }
        self.throttle()?;
        used.1 += 1;
        Ok(())
    }

    fn throttle(&self) -> Result<(), Metered> {
        match &self.bucket {
            Some(b) => b.try_take().map_err(|_| Metered::Throttled),
            None => Ok(()),
        }
    }
}

/// Every configured key, by stage.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_stage: HashMap<(String, KeyHash), Arc<KeyState>>,
}

impl ApiKeys {
    /// The keys of `config`'s usage plans.
    pub fn new(config: &GatewayConfig) -> Self {
        let mut by_stage = HashMap::new();
        for (name, plan) in &config.usage_plans {
            for key in &plan.api_keys {
                let state = Arc::new(KeyState {
                    plan: name.clone(),
                    bucket: plan.throttle.map(Bucket::new),
                    quota: plan.quota.map(|quota| QuotaCounter {
                        quota,
                        used: Mutex::new((i64::MIN, 0)),
                    }),
                });
                for stage in &plan.stages {
                    by_stage.insert((stage.clone(), *key), state.clone());
                }
            }
        }
        ApiKeys { by_stage }
    }

    /// The key `presented` on `stage`, if a plan of the stage has it.
    pub fn lookup(&self, stage: &str, presented: &str) -> Option<Arc<KeyState>> {
        // Looked up by hash: the key itself is never stored or compared.
        self.by_stage
            .get(&(stage.to_owned(), KeyHash::of(presented)))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::epoch_ms;

    fn ms(y: i64, m: u32, d: u32, h: u32) -> i64 {
        epoch_ms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn periods_start_at_midnight_utc_monday_and_the_first() {
        let day = |a, b| period_index(QuotaPeriod::Day, a) == period_index(QuotaPeriod::Day, b);
        assert!(day(ms(2024, 11, 27, 0), ms(2024, 11, 27, 23)));
        assert!(!day(ms(2024, 11, 27, 23), ms(2024, 11, 28, 0)));
        // 2024-11-25 was a Monday, 2024-12-01 a Sunday.
        let week = |a, b| period_index(QuotaPeriod::Week, a) == period_index(QuotaPeriod::Week, b);
        assert!(week(ms(2024, 11, 25, 0), ms(2024, 12, 1, 23)));
        assert!(!week(ms(2024, 11, 24, 23), ms(2024, 11, 25, 0)));
        assert!(!week(ms(2024, 12, 1, 23), ms(2024, 12, 2, 0)));
        let month =
            |a, b| period_index(QuotaPeriod::Month, a) == period_index(QuotaPeriod::Month, b);
        assert!(month(ms(2024, 2, 1, 0), ms(2024, 2, 29, 23)));
        assert!(!month(ms(2024, 2, 29, 23), ms(2024, 3, 1, 0)));
        assert!(!month(ms(2023, 12, 31, 23), ms(2024, 1, 1, 0)));
    }

    #[test]
    fn a_quota_counts_per_period_and_resets() {
        let config = GatewayConfig::parse(
            &format!(
                "[stages.prod]\n[usage_plans.p]\nstages = [\"prod\"]\n\
                 quota = {{ limit = 2, period = \"DAY\" }}\napi_keys = [\"sha256:{}\"]\n",
                data_encoding::HEXLOWER.encode(&KeyHash::of("k1").0)
            ),
            "t",
        )
        .unwrap();
        let keys = ApiKeys::new(&config);
        assert!(keys.lookup("prod", "k2").is_none());
        assert!(keys.lookup("dev", "k1").is_none());
        let k = keys.lookup("prod", "k1").unwrap();
        assert_eq!(k.plan(), "p");
        let t = ms(2024, 11, 27, 10);
        assert_eq!(k.meter(t), Ok(()));
        assert_eq!(k.meter(t), Ok(()));
        assert_eq!(k.meter(t), Err(Metered::OverQuota));
        assert_eq!(k.meter(ms(2024, 11, 27, 23)), Err(Metered::OverQuota));
        assert_eq!(k.meter(ms(2024, 11, 28, 0)), Ok(()));
    }
}

//! Rate limits on authentication: the token endpoint per source address and per (verified)
//! client id,
//! failed bearer tokens per source address, and the patient page's sign-in per source
//! address.
//!
//! Each limit is a [`KeyedLimiter`]: a generic cell rate algorithm per key (the `governor`
//! crate, see `docs/DEPENDENCIES.md`), configured as a sustained rate per minute and a burst
//! (`[rate_limits]` in `config/default.toml`). A refused request learns how long to wait
//! ([`Throttled::retry_after_secs`], sent as `Retry-After`), and every refusal is counted in
//! `consentgate_rate_limited_total{limit=...}`. Checks are in-memory and take well under a
//! microsecond, so a flood is turned away before it costs a database query or a signature
//! check. Limits are per instance: behind a load balancer of `n` instances a key gets up to
//! `n` times the configured rate, which is why the defaults are modest.
//!
//! [`KeyedLimiter`] is the reusable part: the patient page's sign-in (`web::sign_in`) calls
//! [`RateLimits::check_sign_in`] before it looks at an issuer or a code, and anything else
//! that needs a limit per key can hold its own [`KeyedLimiter`].
//!
//! Behind a proxy every request comes from the proxy's address; [`RateLimits::source`] takes
//! the client's address from `X-Forwarded-For` when, and only when, the peer is one of
//! `rate_limits.trusted_proxies` (a client could otherwise name any address it likes).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use prometheus::{IntCounterVec, Opts};

use crate::config::{RateLimit, RateLimitSettings};

/// Keys kept before stale ones are swept (a flood of made-up client ids must not grow memory
/// without bound).
const SWEEP_AT_KEYS: usize = 10_000;
/// Longest client id used as a key; longer claims share one key.
const MAX_KEY_CHARS: usize = 256;

/// A refusal: which limit, and how long until a request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// The limit's name, as in the metric's `limit` label.
    pub limit: &'static str,
    /// Time until the next request would be allowed.
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds for `Retry-After`: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// One rate limit per key; `per_minute = 0` makes it allow everything.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("name", &self.name)
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter named `name` (the metric label) with this rate and burst.
    pub fn new(name: &'static str, limit: RateLimit) -> Self {
        let quota = NonZeroU32::new(limit.per_minute).map(|rate| {
            Quota::per_minute(rate).allow_burst(NonZeroU32::new(limit.burst).unwrap_or(rate))
        });
        KeyedLimiter {
            name,
            limiter: quota.map(DefaultKeyedRateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request's worth of `key`'s allowance, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), Throttled> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= SWEEP_AT_KEYS {
            // Keys whose allowance is full again carry no information.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| Throttled {
            limit: self.name,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// The limit's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Every authentication limit of one gateway instance.
pub struct RateLimits {
    token_per_address: KeyedLimiter<IpAddr>,
    token_per_client: KeyedLimiter<String>,
    failed_auth: KeyedLimiter<IpAddr>,
    sign_in: KeyedLimiter<IpAddr>,
    share_link: KeyedLimiter<IpAddr>,
    /// Addresses that spent their failed-authentication allowance, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    trusted_proxies: Vec<IpNet>,
    refusals: IntCounterVec,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    /// The limits the settings describe; register [`RateLimits::counter`] with the metrics.
    pub fn new(settings: &RateLimitSettings) -> anyhow::Result<RateLimits> {
        let trusted_proxies = crate::config::parse_networks(&settings.trusted_proxies)
            .map_err(|reason| anyhow::anyhow!("rate_limits.trusted_proxies: {reason}"))?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with 429 by a rate limit",
            ),
            &["limit"],
        )?;
        Ok(RateLimits {
            token_per_address: KeyedLimiter::new("token_per_address", settings.token_per_address),
            token_per_client: KeyedLimiter::new("token_per_client", settings.token_per_client),
            failed_auth: KeyedLimiter::new(
                "failed_auth_per_address",
                settings.failed_auth_per_address,
            ),
            sign_in: KeyedLimiter::new("sign_in_per_address", settings.sign_in_per_address),
            share_link: KeyedLimiter::new(
                "share_link_per_address",
                settings.share_link_per_address,
            ),
            blocked: Mutex::new(HashMap::new()),
            trusted_proxies,
            refusals,
        })
    }

    /// The refusal counter, for the application's metrics registry.
    pub fn counter(&self) -> Box<IntCounterVec> {
        Box::new(self.refusals.clone())
    }

    fn counted(&self, result: Result<(), Throttled>) -> Result<(), Throttled> {
        if let Err(t) = &result {
            self.refusals.with_label_values(&[t.limit]).inc();
        }
        result
    }

    /// The client's address: the peer, or for a trusted proxy the last `X-Forwarded-For`
    /// hop that is not itself a trusted proxy.
    pub fn source(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return Some(peer);
        }
        let hops: Vec<IpAddr> = forwarded_for
            .unwrap_or_default()
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        Some(
            hops.iter()
                .rev()
                .find(|ip| !trusted(ip))
                .or(hops.first())
                .copied()
                .unwrap_or(peer),
        )
    }

    /// A token request (or a revocation or introspection by assertion) from `source`,
    /// counted before anything is checked, so a flood costs nothing but this check.
    pub fn check_token_address(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        match source {
            Some(ip) => self.counted(self.token_per_address.check(&ip)),
            None => Ok(()),
        }
    }

    /// A token for `client_id`, counted once the client has authenticated: only the holder
    /// of a client's key can spend its allowance, so nobody can lock a client out by
    /// sending assertions in its name (those count against their own address).
    pub fn check_token_client(&self, client_id: &str) -> Result<(), Throttled> {
        let key: String = client_id.chars().take(MAX_KEY_CHARS).collect();
        self.counted(self.token_per_client.check(&key))
    }

    /// Before a bearer token is verified: refused while `source` is blocked for failures.
    pub fn check_bearer(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        let Some(ip) = source else {
            return Ok(());
        };
        let now = Instant::now();
        let Ok(mut blocked) = self.blocked.lock() else {
            return Ok(());
        };
        match blocked.get(&ip) {
            Some(until) if *until > now => {
                let t = Throttled {
                    limit: self.failed_auth.name(),
                    retry_after: *until - now,
                };
                self.refusals.with_label_values(&[t.limit]).inc();
                Err(t)
            }
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After a bearer token failed verification: counts it, and blocks `source` for the
    /// wait the limiter names once its allowance is spent.
    pub fn record_failed_bearer(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        let Some(ip) = source else {
            return Ok(());
        };
        let Err(t) = self.failed_auth.check(&ip) else {
            return Ok(());
        };
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            if blocked.len() >= SWEEP_AT_KEYS {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + t.retry_after);
        }
        self.refusals.with_label_values(&[t.limit]).inc();
        Err(t)
    }

    /// A SMART Health Link manifest or file request from `source`, before the link is looked
    /// up.
    pub fn check_share_link(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        match source {
            Some(ip) => self.counted(self.share_link.check(&ip)),
            None => Ok(()),
        }
    }

    /// A sign-in attempt from `source` (the patient page's sign-in calls this first).
    pub fn check_sign_in(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        match source {
            Some(ip) => self.counted(self.sign_in.check(&ip)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_minute: u32, burst: u32, proxies: &[&str]) -> RateLimitSettings {
        let limit = RateLimit { per_minute, burst };
        RateLimitSettings {
            token_per_address: limit,
            token_per_client: limit,
            failed_auth_per_address: limit,
            sign_in_per_address: limit,
            share_link_per_address: limit,
            trusted_proxies: proxies.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_burst_then_a_wait() {
        let limits = RateLimits::new(&settings(60, 3, &[])).unwrap();
        for _ in 0..3 {
            assert!(limits.check_token_address(ip("10.0.0.1")).is_ok());
        }
        let t = limits.check_token_address(ip("10.0.0.1")).unwrap_err();
        assert_eq!(t.limit, "token_per_address");
        assert!((1..=1).contains(&t.retry_after_secs()), "{t:?}");
        // Another address has its own allowance.
        assert!(limits.check_token_address(ip("10.0.0.2")).is_ok());
        assert_eq!(
            limits
                .refusals
                .with_label_values(&["token_per_address"])
                .get(),
            1
        );
    }

    #[test]
    fn per_client_independent_of_address() {
        let limits = RateLimits::new(&settings(60, 2, &[])).unwrap();
        assert!(limits.check_token_client("c1").is_ok());
        assert!(limits.check_token_client("c1").is_ok());
        let t = limits.check_token_client("c1").unwrap_err();
        assert_eq!(t.limit, "token_per_client");
        assert!(limits.check_token_client("c2").is_ok());
    }

    #[test]
    fn failures_block_the_address_until_the_window_passes() {
        let limits = RateLimits::new(&settings(600, 2, &[])).unwrap();
        let a = ip("192.0.2.1");
        assert!(limits.check_bearer(a).is_ok());
        assert!(limits.record_failed_bearer(a).is_ok());
        assert!(limits.record_failed_bearer(a).is_ok());
        let t = limits.record_failed_bearer(a).unwrap_err();
        assert_eq!(t.limit, "failed_auth_per_address");
        assert!(limits.check_bearer(a).is_err(), "blocked before verifying");
        assert!(limits.check_bearer(ip("192.0.2.2")).is_ok());
        std::thread::sleep(t.retry_after + Duration::from_millis(20));
        assert!(limits.check_bearer(a).is_ok(), "the block lapses");
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = RateLimits::new(&settings(0, 0, &[])).unwrap();
        for _ in 0..1000 {
            assert!(limits.check_sign_in(ip("10.0.0.1")).is_ok());
            assert!(limits.record_failed_bearer(ip("10.0.0.1")).is_ok());
        }
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let limits = RateLimits::new(&settings(60, 5, &["10.0.0.0/8"])).unwrap();
        let xff = Some("203.0.113.7, 10.1.1.1");
        // A trusted proxy: the last hop that is not a proxy.
        assert_eq!(limits.source(ip("10.0.0.5"), xff), ip("203.0.113.7"));
        // Anyone else cannot choose their address.
        assert_eq!(limits.source(ip("198.51.100.1"), xff), ip("198.51.100.1"));
        // A spoofed leftmost entry does not win over the real client the proxy appended.
        assert_eq!(
            limits.source(ip("10.0.0.5"), Some("1.2.3.4, 203.0.113.9")),
            ip("203.0.113.9")
        );
        assert_eq!(limits.source(ip("10.0.0.5"), None), ip("10.0.0.5"));
        assert_eq!(limits.source(ip("10.0.0.5"), Some("junk")), ip("10.0.0.5"));
    }

    #[test]
    fn made_up_keys_are_swept() {
        let limiter = KeyedLimiter::<String>::new(
            "t",
            RateLimit {
                per_minute: 6000,
                burst: 1,
            },
        );
        for i in 0..(SWEEP_AT_KEYS * 2) {
            let _ = limiter.check(&format!("client-{i}"));
        }
        assert!(limiter.limiter.as_ref().unwrap().len() <= SWEEP_AT_KEYS + 1);
    }
}

//! Replay nonces (RFC 8555 §6.5): random, single use, short-lived, kept in memory. A restart
//! forgets them all; clients then get `badNonce` once and retry with a fresh one, as the RFC
//! expects them to.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How long a nonce stays usable.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// The most nonces outstanding; past it the oldest are forgotten.
pub const MAX_NONCES: usize = 200_000;

/// Outstanding nonces.
#[derive(Debug, Default)]
pub struct Nonces {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Instant>,
    order: VecDeque<String>,
}

impl Nonces {
    /// A fresh nonce (128 random bits, base64url).
    ///
    /// # Errors
    /// When the system random source fails.
    pub fn issue(&self) -> Result<String, ring::error::Unspecified> {
        let mut b = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)?;
        let n = URL_SAFE_NO_PAD.encode(b);
        let now = Instant::now();
        if let Ok(mut g) = self.inner.lock() {
            while g.order.len() >= MAX_NONCES {
                if let Some(old) = g.order.pop_front() {
                    g.live.remove(&old);
                }
            }
            // drop expired ones from the front
            while let Some(front) = g.order.front() {
                match g.live.get(front) {
                    Some(t) if now.duration_since(*t) < NONCE_LIFETIME => break,
                    _ => {
                        let f = front.clone();
                        g.order.pop_front();
                        g.live.remove(&f);
                    }
                }
            }
            g.live.insert(n.clone(), now);
            g.order.push_back(n.clone());
        }
        Ok(n)
    }

    /// Uses up a nonce: true once for a nonce this process issued and that has not expired.
    pub fn consume(&self, nonce: &str) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        match g.live.remove(nonce) {
            Some(t) => t.elapsed() < NONCE_LIFETIME,
            None => false,
        }
    }

    /// How many are outstanding.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.live.len()).unwrap_or(0)
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let n = Nonces::default();
        let a = n.issue().unwrap();
        let b = n.issue().unwrap();
        assert_ne!(a, b);
        assert!(n.consume(&a));
        assert!(!n.consume(&a));
        assert!(!n.consume("never-issued"));
        assert!(n.consume(&b));
        assert!(n.is_empty());
    }
}

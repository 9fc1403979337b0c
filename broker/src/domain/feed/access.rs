//! Who may read which feed, and the operations on the broker's signing keys, as [`Domain`]
//! operations.
//!
//! A tenant's feed is readable with any token of that tenant (any role) and by operators;
//! another tenant's token gets NotFound, as for every other tenant resource. The JWKS is
//! public; rotating the keys is for operators and is audited.

use std::sync::Arc;

use serde_json::json;
use time::Duration;

use crate::domain::error::{DomainError, DomainResult, ErrorKind};
use crate::domain::keys::{self, Keys, Rotation};
use crate::domain::{Domain, Principal};
use crate::model::DEFAULT_TENANT;

use super::{DeviceProof, Entry, Feed, SignedCheckpoint};
use postern_certs::merkle::Hash;

impl Domain {
    /// Installs the feed (and, through it, the signing keys).
    #[must_use]
    pub fn with_feed(mut self, feed: Arc<Feed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The feed.
    ///
    /// # Errors
    /// Unavailable when the domain was built without one.
    pub fn feed(&self) -> DomainResult<&Arc<Feed>> {
        self.feed
            .as_ref()
            .ok_or_else(|| DomainError::new(ErrorKind::Unavailable, "no feed configured"))
    }

    /// The broker's signing keys.
    ///
    /// # Errors
    /// Unavailable when the domain was built without a feed.
    pub fn keys(&self) -> DomainResult<&Arc<Keys>> {
        Ok(self.feed()?.keys())
    }

    /// The public JWK Set: active keys and retired keys inside their overlap.
    ///
    /// # Errors
    /// Unavailable without keys.
    pub fn jwks(&self) -> DomainResult<serde_json::Value> {
        Ok(self.keys()?.jwks(self.clock.now()))
    }

    /// Makes new signing keys active; the replaced ones stay published for `overlap`
    /// ([`keys::DEFAULT_OVERLAP`] when `None`). Audited.
    ///
    /// # Errors
    /// Forbidden unless an operator; Malformed for an overlap out of range; internal when the
    /// keys cannot be made or written.
    pub async fn rotate_keys(
        &self,
        who: &Principal,
        overlap: Option<Duration>,
    ) -> DomainResult<Rotation> {
        who.require_operator()?;
        let keys = Arc::clone(self.keys()?);
        let overlap = overlap.unwrap_or(keys::DEFAULT_OVERLAP);
        let now = self.clock.now();
        // RSA key generation takes a while: off the runtime's workers
        let rotation = tokio::task::spawn_blocking(move || keys.rotate(now, overlap))
            .await
            .map_err(|e| DomainError::internal(format!("key rotation task: {e}")))??;
        self.record(
            who,
            DEFAULT_TENANT,
            "keys.rotate",
            "signing-keys",
            json!({
                "overlap_seconds": overlap.whole_seconds(),
                "activated": rotation.activated,
                "retired": rotation.retired,
                "dropped": rotation.dropped,
            }),
        )
        .await?;
        Ok(rotation)
    }

    /// The current signed checkpoint of `tenant`'s feed.
    ///
    /// # Errors
    /// NotFound for another tenant's feed or an unknown tenant; as [`Feed::checkpoint`].
    pub fn feed_checkpoint(&self, who: &Principal, tenant: &str) -> DomainResult<SignedCheckpoint> {
        self.readable_feed(who, tenant)?
            .checkpoint(tenant, self.clock.now())
    }

    /// Entries `start..end` of `tenant`'s feed.
    ///
    /// # Errors
    /// NotFound for another tenant's feed; as [`Feed::entries`].
    pub fn feed_entries(
        &self,
        who: &Principal,
        tenant: &str,
        start: u64,
        end: u64,
    ) -> DomainResult<Vec<Entry>> {
        self.readable_feed(who, tenant)?.entries(tenant, start, end)
    }

    /// The consistency proof between two sizes of `tenant`'s feed.
    ///
    /// # Errors
    /// NotFound for another tenant's feed; as [`Feed::consistency`].
    pub fn feed_consistency(
        &self,
        who: &Principal,
        tenant: &str,
        first: u64,
        second: u64,
    ) -> DomainResult<Vec<Hash>> {
        self.readable_feed(who, tenant)?
            .consistency(tenant, first, second)
    }

    /// A device's newest entry, its inclusion proof and a signed statement.
    ///
    /// # Errors
    /// NotFound for another tenant's feed or a device without entries; as [`Feed::device`].
    pub fn feed_device(
        &self,
        who: &Principal,
        tenant: &str,
        device_id: &str,
    ) -> DomainResult<DeviceProof> {
        self.readable_feed(who, tenant)?
            .device(tenant, device_id, self.clock.now())?
            .ok_or_else(|| {
                DomainError::new(
                    ErrorKind::NotFound,
                    format!("no feed entry for device {device_id}"),
                )
            })
    }

    /// The feed, once `who` may read `tenant`'s.
    fn readable_feed(&self, who: &Principal, tenant: &str) -> DomainResult<&Arc<Feed>> {
        let not_found =
            || DomainError::new(ErrorKind::NotFound, format!("no feed for tenant {tenant}"));
        if who.tenant != tenant && !who.is_operator() {
            return Err(not_found());
        }
        crate::domain::tenancy::check_tenant_id(tenant).map_err(|_| not_found())?;
        if who.tenant != tenant && self.store.tenant(tenant)?.is_none() {
            return Err(not_found());
        }
        self.feed()
    }
}

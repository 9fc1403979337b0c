//! The domain: policy and orchestration. It decides; the store remembers; the HTTP layer
//! only translates.
//!
//! **Architecture Invariant:** nothing here names `axum` or `sled` (a tidy test checks).
//! Every issuance and revocation is answered only after it and its audit entry are durable:
//! store writes return once durable, and [`Domain::write`] runs them off the runtime's workers.

pub mod acme;
pub mod audit;
pub mod clock;
pub mod devices;
pub mod error;
pub mod feed;
pub mod gateway_cert;
pub mod keys;
pub mod pki;
pub mod posture;
pub mod profiles;
pub mod scep;
pub mod scim;
pub mod ssf;
pub mod tenancy;
pub mod webhooks;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DomainError, DomainResult, ErrorKind};
pub use pki::Pki;
pub use tenancy::Principal;

use crate::store::{Store, StoreError};

/// The service's state and its operations; shared by every request.
#[derive(Debug)]
pub struct Domain {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    pki: Pki,
    /// The signed feed and the keys that sign it (see [`Domain::with_feed`]).
    feed: Option<Arc<feed::Feed>>,
}

impl Domain {
    /// Puts the domain together. Must run inside a tokio runtime (it starts the flusher).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, pki: Pki) -> Self {
        Domain {
            store,
            clock,
            pki,
            feed: None,
        }
    }

    /// The store (for read-only status checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The PKI: issuing CA, profiles, CRL and OCSP.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Runs a store write; it returns once the write is durable. Stores whose writes wait for
    /// the disk run on a blocking thread, so the wait holds no runtime worker.
    ///
    /// # Errors
    /// The store's error; a writer task that could not run is a backend error.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        if !self.store.writes_wait() {
            return f(&*self.store);
        }
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| StoreError::Backend(format!("store write task: {e}")))?
    }

    /// Commits a document transaction; it returns once durable. With a store whose writes
    /// wait, the write is handed to the store and awaited without holding any thread.
    ///
    /// # Errors
    /// The store's error ([`StoreError::Conflict`] when a check fails).
    pub async fn commit(
        &self,
        txn: crate::store::DocTxn,
    ) -> Result<Option<crate::model::AuditEntry>, StoreError> {
        if self.store.writes_wait() {
            self.store.commit_async(txn).await
        } else {
            self.store.commit(txn)
        }
    }

    /// Flushes the store (at shutdown).
    ///
    /// # Errors
    /// The store's flush error.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|s| s.flush()).await
    }

    /// Whether the service can answer: the store reads and the OCSP responder is installed.
    ///
    /// # Errors
    /// Unavailable naming what is missing.
    pub async fn ready(&self) -> DomainResult<()> {
        self.store
            .tenant(crate::model::DEFAULT_TENANT)
            .map_err(|e| DomainError::new(ErrorKind::Unavailable, format!("store: {e}")))?;
        if self.pki.responder().is_none() {
            return Err(DomainError::new(
                ErrorKind::Unavailable,
                "no OCSP responder",
            ));
        }
        Ok(())
    }
}

//! The domain: policy and orchestration. It decides; the store remembers; the HTTP layer
//! only translates.
//!
//! **Architecture Invariant:** nothing here names `axum` or `sled` (a tidy test checks).
//! Every issuance and revocation is answered only after it and its audit entry are durable
//! ([`commit::GroupCommit`]).

pub mod audit;
pub mod clock;
pub mod commit;
pub mod error;
pub mod pki;
pub mod tenancy;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DomainError, DomainResult, ErrorKind};
pub use pki::Pki;
pub use tenancy::Principal;

use crate::store::Store;
use commit::GroupCommit;

/// The service's state and its operations; shared by every request.
#[derive(Debug)]
pub struct Domain {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    commit: Arc<GroupCommit>,
    pki: Pki,
}

impl Domain {
    /// Puts the domain together. Must run inside a tokio runtime (it starts the flusher).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, pki: Pki) -> Self {
        let commit = GroupCommit::start(Arc::clone(&store));
        Domain {
            store,
            clock,
            commit,
            pki,
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

    /// Waits until every write completed so far is durable.
    ///
    /// # Errors
    /// Internal when the flush fails.
    pub async fn durable(&self) -> DomainResult<()> {
        if !self.store.persistent() {
            return Ok(());
        }
        self.commit.durable().await
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

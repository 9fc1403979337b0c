//! The audit trail: append-only, hash-chained; verified end to end by [`verify`].

use serde::Serialize;

use crate::model::{AUDIT_GENESIS, AuditDraft, AuditEntry};
use crate::store::Store;

use super::error::{DomainError, DomainResult};
use super::{Domain, Principal};

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// How many entries were checked.
    pub entries: u64,
    /// The hash of the last entry (the genesis value for an empty log).
    pub head: String,
}

/// Reads the whole log and checks sequence numbers, links and hashes.
///
/// # Errors
/// [`ErrorKind::Conflict`](super::ErrorKind::Conflict) naming the first broken entry; store
/// failures as internal errors.
pub fn verify(store: &dyn Store) -> DomainResult<ChainReport> {
    let mut prev = AUDIT_GENESIS.to_owned();
    let mut next_seq = 1u64;
    loop {
        let page = store.audit_entries(next_seq, 1000)?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            if e.seq != next_seq {
                return Err(broken(next_seq, format!("found seq {} instead", e.seq)));
            }
            if e.prev_hash != prev {
                return Err(broken(e.seq, "prev_hash does not match the entry before"));
            }
            if e.compute_hash() != e.hash {
                return Err(broken(e.seq, "hash does not match the entry's contents"));
            }
            prev = e.hash.clone();
            next_seq += 1;
        }
    }
    Ok(ChainReport {
        entries: next_seq - 1,
        head: prev,
    })
}

fn broken(seq: u64, why: impl Into<String>) -> DomainError {
    DomainError::new(
        super::ErrorKind::Conflict,
        format!("audit chain broken at entry {seq}: {}", why.into()),
    )
}

impl Domain {
    /// A page of the audit log. Operators see every tenant; others see their own.
    ///
    /// # Errors
    /// Forbidden for non-admins; store failures.
    pub fn audit_page(
        &self,
        who: &Principal,
        from: u64,
        limit: usize,
    ) -> DomainResult<Vec<AuditEntry>> {
        who.require_admin()?;
        let limit = limit.clamp(1, 1000);
        let mut out = Vec::new();
        let mut cursor = from.max(1);
        // tenant filtering may drop entries; keep reading until the page is full or the log ends
        loop {
            let page = self.store.audit_entries(cursor, limit)?;
            let Some(last) = page.last() else { break };
            cursor = last.seq + 1;
            out.extend(
                page.into_iter()
                    .filter(|e| who.is_operator() || e.tenant == who.tenant),
            );
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// Checks the audit chain.
    ///
    /// # Errors
    /// As [`verify`]; Forbidden unless an operator.
    pub fn verify_audit(&self, who: &Principal) -> DomainResult<ChainReport> {
        who.require_operator()?;
        verify(&*self.store)
    }

    /// Records an event that is not part of another write (CA creation, configuration
    /// changes); answered once durable.
    ///
    /// # Errors
    /// Store failures.
    pub async fn record(
        &self,
        who: &Principal,
        tenant: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> DomainResult<AuditEntry> {
        let draft = self.draft(who, tenant, action, subject, details);
        Ok(self.write(move |s| s.append_audit(draft)).await?)
    }

    pub(crate) fn draft(
        &self,
        who: &Principal,
        tenant: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            time: self.clock.now(),
            tenant: tenant.to_owned(),
            actor: who.actor(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            details,
        }
    }
}

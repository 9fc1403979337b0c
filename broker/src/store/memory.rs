//! In-memory [`Store`]: every record in `BTreeMap`s behind one mutex.
//!
//! Each operation holds the lock from its first read to its last write, so multi-record writes
//! (a certificate and its audit entry, ...) are atomic and the audit chain is never interleaved.
//! Nothing survives the process; [`Store::flush`] is a no-op. For tests and throwaway runs.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use time::OffsetDateTime;

use super::{DocKind, DocTxn, Expect, RevokedSerial, Store, StoreError, StoreResult, check_failed};
use crate::model::{
    AUDIT_GENESIS, AuditDraft, AuditEntry, CertificateRecord, CertificateStatus, RevocationReason,
    Tenant, TokenRecord,
};

/// A [`Store`] that keeps everything in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

/// The records, all behind the one lock.
#[derive(Debug, Default)]
struct Inner {
    tenants: BTreeMap<String, Tenant>,
    tokens: BTreeMap<String, TokenRecord>,
    certificates: BTreeMap<String, CertificateRecord>,
    revoked: BTreeMap<String, (OffsetDateTime, RevocationReason)>,
    /// The audit log; entry `seq` sits at index `seq - 1`.
    audit: Vec<AuditEntry>,
    counters: BTreeMap<String, u64>,
    meta: BTreeMap<String, Vec<u8>>,
    docs: BTreeMap<(DocKind, String), Vec<u8>>,
}

impl Inner {
    /// Seals `draft` as the next entry of the chain and appends it.
    fn append(&mut self, mut draft: AuditDraft) -> AuditEntry {
        let (seq, prev) = match self.audit.last() {
            Some(last) => {
                // entries are in time order: a draft made before the last entry was sealed
                // takes its time
                draft.time = draft.time.max(last.time);
                (last.seq + 1, last.hash.as_str())
            }
            None => (1, AUDIT_GENESIS),
        };
        let entry = draft.seal(seq, prev);
        self.audit.push(entry.clone());
        entry
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lock; a poisoned lock (a panic while holding it) is a backend failure, since the
    /// records may be half-written.
    fn lock(&self) -> StoreResult<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned by a panic".into()))
    }
}

impl Store for MemoryStore {
    fn insert_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let mut g = self.lock()?;
        if g.tenants.contains_key(&tenant.id) {
            return Err(StoreError::Conflict(format!(
                "tenant {:?} exists already",
                tenant.id
            )));
        }
        g.tenants.insert(tenant.id.clone(), tenant.clone());
        Ok(g.append(audit))
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        Ok(self.lock()?.tenants.get(id).cloned())
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(self.lock()?.tenants.values().cloned().collect())
    }

    fn insert_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let mut g = self.lock()?;
        if g.tokens.contains_key(&token.id) {
            return Err(StoreError::Conflict(format!(
                "token {:?} exists already",
                token.id
            )));
        }
        g.tokens.insert(token.id.clone(), token.clone());
        Ok(g.append(audit))
    }

    fn put_token(&self, token: &TokenRecord, audit: AuditDraft) -> StoreResult<AuditEntry> {
        let mut g = self.lock()?;
        g.tokens.insert(token.id.clone(), token.clone());
        Ok(g.append(audit))
    }

    fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        Ok(self.lock()?.tokens.get(id).cloned())
    }

    fn tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        Ok(self
            .lock()?
            .tokens
            .values()
            .filter(|t| t.tenant == tenant)
            .cloned()
            .collect())
    }

    fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> StoreResult<TokenRecord> {
        let mut g = self.lock()?;
        let token = g.tokens.get_mut(id).ok_or(StoreError::NotFound)?;
        if token.revoked_at.is_some() {
            return Err(StoreError::AlreadyRevoked);
        }
        token.revoked_at = Some(at);
        let token = token.clone();
        g.append(audit);
        Ok(token)
    }

    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: AuditDraft,
    ) -> StoreResult<AuditEntry> {
        let mut g = self.lock()?;
        if g.certificates.contains_key(&cert.serial) {
            return Err(StoreError::Conflict(format!(
                "certificate serial {} exists already",
                cert.serial
            )));
        }
        g.certificates.insert(cert.serial.clone(), cert.clone());
        if let CertificateStatus::Revoked { revoked_at, reason } = cert.status {
            // Keep `revoked()` consistent with the records even for a record stored revoked.
            g.revoked.insert(cert.serial.clone(), (revoked_at, reason));
        }
        Ok(g.append(audit))
    }

    fn certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>> {
        Ok(self.lock()?.certificates.get(serial).cloned())
    }

    fn revoke_certificate(
        &self,
        serial: &str,
        at: OffsetDateTime,
        reason: RevocationReason,
        audit: AuditDraft,
    ) -> StoreResult<CertificateRecord> {
        let mut g = self.lock()?;
        let cert = g.certificates.get_mut(serial).ok_or(StoreError::NotFound)?;
        if matches!(cert.status, CertificateStatus::Revoked { .. }) {
            return Err(StoreError::AlreadyRevoked);
        }
        cert.status = CertificateStatus::Revoked {
            revoked_at: at,
            reason,
        };
        let cert = cert.clone();
        g.revoked.insert(serial.to_owned(), (at, reason));
        g.append(audit);
        Ok(cert)
    }

    fn revoked(&self) -> StoreResult<Vec<RevokedSerial>> {
        Ok(self
            .lock()?
            .revoked
            .iter()
            .map(|(serial, &(revoked_at, reason))| RevokedSerial {
                serial: serial.clone(),
                revoked_at,
                reason,
            })
            .collect())
    }

    fn certificate_count(&self) -> StoreResult<u64> {
        Ok(self.lock()?.certificates.len() as u64)
    }

    fn append_audit(&self, audit: AuditDraft) -> StoreResult<AuditEntry> {
        Ok(self.lock()?.append(audit))
    }

    fn audit_entries(&self, from: u64, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let g = self.lock()?;
        // Entry `seq` is at index `seq - 1`; `from` 0 means from the start.
        let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(g.audit.iter().skip(start).take(limit).cloned().collect())
    }

    fn next_counter(&self, name: &str) -> StoreResult<u64> {
        let mut g = self.lock()?;
        let c = g.counters.entry(name.to_owned()).or_insert(0);
        *c = c
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend(format!("counter {name:?} overflowed")))?;
        Ok(*c)
    }

    fn meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock()?.meta.get(key).cloned())
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.lock()?.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    fn writes_wait(&self) -> bool {
        false
    }

    fn doc(&self, kind: DocKind, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock()?.docs.get(&(kind, id.to_owned())).cloned())
    }

    fn docs(
        &self,
        kind: DocKind,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let g = self.lock()?;
        Ok(g.docs
            .range((kind, prefix.to_owned())..)
            .take_while(|((k, id), _)| *k == kind && id.starts_with(prefix))
            .take(limit)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, txn: DocTxn) -> StoreResult<Option<AuditEntry>> {
        let mut g = self.lock()?;
        for (kind, id, expect) in &txn.checks {
            let current = g.docs.get(&(*kind, id.clone()));
            let holds = match expect {
                Expect::Absent => current.is_none(),
                Expect::Bytes(b) => current == Some(b),
            };
            if !holds {
                return Err(check_failed(*kind, id, expect));
            }
        }
        if let Some(cert) = &txn.certificate
            && g.certificates.contains_key(&cert.serial)
        {
            return Err(StoreError::Conflict(format!(
                "certificate serial {} exists already",
                cert.serial
            )));
        }
        if let Some(cert) = txn.certificate {
            if let CertificateStatus::Revoked { revoked_at, reason } = cert.status {
                g.revoked.insert(cert.serial.clone(), (revoked_at, reason));
            }
            g.certificates.insert(cert.serial.clone(), cert);
        }
        for (kind, id, value) in txn.writes {
            match value {
                Some(v) if !v.is_empty() => g.docs.insert((kind, id), v),
                _ => g.docs.remove(&(kind, id)),
            };
        }
        Ok(txn.audit.map(|a| g.append(a)))
    }
}

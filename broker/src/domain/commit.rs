//! Group commit: callers wait until their write is durable, and one `flush` covers every
//! write that completed before it started.
//!
//! A writer takes a ticket after its write completes ([`GroupCommit::durable`]). A single
//! flusher task loops: it notes the newest ticket handed out, flushes the store (which makes
//! every write completed so far durable), then publishes that ticket as flushed and wakes the
//! waiters. Under load one flush serves many writers; alone, a writer waits for one flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use crate::domain::error::{DomainError, DomainResult};
use crate::store::Store;

/// The group committer; cheap to share.
#[derive(Debug)]
pub struct GroupCommit {
    issued: AtomicU64,
    wake: Arc<Notify>,
    flushed: watch::Receiver<Result<u64, String>>,
    store: Arc<dyn Store>,
    tx: watch::Sender<Result<u64, String>>,
}

impl GroupCommit {
    /// Starts the flusher task on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = watch::channel(Ok(0));
        let gc = Arc::new(GroupCommit {
            issued: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            flushed: rx,
            store,
            tx,
        });
        let weak = Arc::downgrade(&gc);
        tokio::spawn(async move {
            loop {
                let Some(gc) = weak.upgrade() else { return };
                let target = gc.issued.load(Ordering::Acquire);
                let done = match gc.tx.borrow().as_ref() {
                    Ok(d) => *d,
                    Err(_) => 0,
                };
                if target <= done {
                    let wake = Arc::clone(&gc.wake);
                    drop(gc);
                    // the writer's notify_one leaves a permit if it comes before this wait;
                    // the timeout lets the task notice that the committer was dropped
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
                            .await;
                    continue;
                }
                let store = Arc::clone(&gc.store);
                let res = tokio::task::spawn_blocking(move || store.flush()).await;
                let outcome = match res {
                    Ok(Ok(())) => Ok(target),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("flush task: {e}")),
                };
                let failed = outcome.is_err();
                // send_replace stores the value even with no receiver left
                let _ = gc.tx.send_replace(outcome);
                if failed {
                    // a failing disk: back off, then try again with the same writes
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let _ = gc.tx.send_replace(Ok(done));
                }
            }
        });
        gc
    }

    /// Waits until every write this caller completed before the call is durable.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`](crate::domain::error::ErrorKind::Internal) when the flush failed.
    pub async fn durable(&self) -> DomainResult<()> {
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        let mut rx = self.flushed.clone();
        loop {
            match &*rx.borrow_and_update() {
                Ok(done) if *done >= ticket => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(DomainError::internal(format!("flush failed: {e}"))),
            }
            if rx.changed().await.is_err() {
                return Err(DomainError::internal("flusher stopped"));
            }
        }
    }
}

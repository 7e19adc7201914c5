//! Where transactions go: the kernel (`nft -f -` in the calling thread's
//! network namespace) or the in-memory [`Fake`](crate::fake::Fake); and the
//! [`Syncer`] that keeps a [`Mirror`] honest across both.
//!
//! The seam exists because there are two implementations with the same
//! contract — all-or-nothing application of a transaction — so compile and
//! sync logic is tested without root, and the kernel test checks the same
//! code against the real thing.

use tracing::{debug, warn};

use crate::diff::Mirror;
use crate::model::{ModelError, Ruleset};
use crate::Transaction;

/// Applies nft transactions atomically.
pub trait Backend {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies every statement or none.
    fn apply(&mut self, tx: &Transaction) -> Result<(), Self::Error>;
}

/// The kernel: runs `nft -f -` in the network namespace of the calling
/// thread (the child process inherits it). To write another namespace, call
/// it from a thread that entered it (`weft_linux::Netns::run`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NftBackend;

impl Backend for NftBackend {
    type Error = crate::Error;

    fn apply(&mut self, tx: &Transaction) -> Result<(), crate::Error> {
        tx.apply()
    }
}

/// A sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError<E: std::error::Error + 'static> {
    #[error("desired ruleset is invalid: {0}")]
    Invalid(#[from] ModelError),
    #[error("writing table {table}: {source}")]
    Apply {
        table: String,
        #[source]
        source: E,
    },
}

/// What a successful sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The whole table was written.
    Full,
    /// Only the differences were written.
    Diff,
    /// Nothing had changed; nothing was written.
    Unchanged,
}

/// One table's writer: plans from the mirror, applies, and records the
/// result. A failed write forgets the mirror, so the next sync is full.
#[derive(Debug)]
pub struct Syncer<B: Backend> {
    backend: B,
    mirror: Mirror,
}

impl<B: Backend> Syncer<B> {
    pub fn new(backend: B) -> Self {
        Syncer {
            backend,
            mirror: Mirror::new(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Makes the table hold `desired`.
    pub fn sync(&mut self, desired: &Ruleset) -> Result<SyncKind, SyncError<B::Error>> {
        let kind = if self.mirror.written().is_some() {
            SyncKind::Diff
        } else {
            SyncKind::Full
        };
        let tx = self.mirror.plan(desired)?;
        if tx.is_empty() {
            return Ok(SyncKind::Unchanged);
        }
        let table = desired.table.spec();
        debug!(%table, statements = tx.statements().len(), ?kind, "writing nft table");
        match self.backend.apply(&tx) {
            Ok(()) => {
                self.mirror.record(desired.clone());
                Ok(kind)
            }
            Err(source) => {
                warn!(%table, error = %source, "nft write failed; next sync is a full one");
                self.mirror.forget();
                Err(SyncError::Apply { table, source })
            }
        }
    }
}

//! The ledger state on disk, in redb: one snapshot per applied block,
//! written in a single transaction, so a crash leaves either the state
//! before the block or the state after it.

use std::path::Path;

use cairn_ledger::State;
use redb::{Database, ReadableDatabase, TableDefinition};

/// Key 0: the snapshot of the state after the last applied block.
const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_state");
const LATEST: u64 = 0;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("ledger store: {0}")]
pub struct StoreError(String);

impl StoreError {
    pub(crate) fn new(message: &str) -> Self {
        Self(message.to_string())
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The node-local ledger store.
pub struct StateStore {
    db: Database,
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        Ok(Self {
            db: Database::create(path).map_err(err)?,
        })
    }

    /// The last state saved, if any.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = match txn.open_table(STATE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let Some(bytes) = table.get(LATEST).map_err(err)? else {
            return Ok(None);
        };
        State::from_snapshot(bytes.value())
            .map(Some)
            .map_err(|e| StoreError(format!("corrupt snapshot: {e}")))
    }

    /// Saves `state` durably.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(STATE).map_err(err)?;
            table
                .insert(LATEST, state.to_snapshot().as_slice())
                .map_err(err)?;
        }
        txn.commit().map_err(err)
    }
}

//! The ledger state on disk, in redb: one row per entry of the state (see
//! `cairn_ledger::State::take_changes`), and each applied block writes the
//! rows it changed in a single transaction, so a block costs what it
//! changed, and a crash leaves either the state before the block or the
//! state after it.

use std::path::{Path, PathBuf};

use cairn_ledger::{Change, State};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The state's rows, by key.
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger_rows");

/// Where stores written before rows kept the whole state as one snapshot.
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_state");

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
    path: PathBuf,
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        Ok(Self {
            db: Database::create(path).map_err(err)?,
            path: path.to_path_buf(),
        })
    }

    /// The last state saved, if any.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        if txn.open_table(SNAPSHOTS).is_ok() {
            return Err(StoreError(format!(
                "{} was written by an older cairn (one snapshot of the whole state): \
                 remove it to start from genesis (other validators, if any, bring the \
                 node up to date; a devnet starts afresh in a new folder)",
                self.path.display()
            )));
        }
        let table = match txn.open_table(ROWS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut rows = Vec::new();
        for row in table.iter().map_err(err)? {
            let (key, value) = row.map_err(err)?;
            rows.push((key.value().to_vec(), value.value().to_vec()));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        State::from_rows(rows.iter().map(|(k, v)| (&k[..], &v[..])))
            .map(Some)
            .map_err(|e| StoreError(format!("corrupt state: {e}")))
    }

    /// Writes `changes` (from [`State::take_changes`]) durably, all or
    /// nothing.
    pub fn save(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(ROWS).map_err(err)?;
            for change in changes {
                match &change.value {
                    Some(value) => table.insert(&change.key[..], &value[..]).map(drop),
                    None => table.remove(&change.key[..]).map(drop),
                }
                .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }
}

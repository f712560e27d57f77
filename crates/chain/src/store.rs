//! The ledger state on disk, in redb: one row per entry of the state (see
//! `cairn_ledger::State::take_changes`), and each applied block writes the
//! rows it changed in a single transaction, so a block costs what it
//! changed, and a crash leaves either the state before the block or the
//! state after it.
//!
//! Each row is stored behind a version byte ([`ROW_VERSION`]), and the
//! store names its format in a table of its own, so rows another version
//! of Cairn encoded otherwise are refused by name rather than decoded
//! into a wrong state.

use std::path::{Path, PathBuf};

use cairn_ledger::{Change, State};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The state's rows, by key.
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger_rows");

/// Where stores written before rows kept the whole state as one snapshot.
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger_state");

/// The version of the rows' encoding this build writes: the byte each
/// stored row starts with. Raise it when a row's encoding, or what it
/// means, changes (2: a settled result's row holds the fuel it was paid
/// for, not the amount).
pub const ROW_VERSION: u8 = 2;

/// The store's own facts: its row format, under [`FORMAT_KEY`].
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger_meta");

/// The key of the row format in [`META`].
const FORMAT_KEY: &[u8] = b"row_version";

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
        let format = match txn.open_table(META) {
            Ok(meta) => meta
                .get(FORMAT_KEY)
                .map_err(err)?
                .map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(err(e)),
        };
        if format.as_deref() != Some(&[ROW_VERSION]) {
            return Err(StoreError(format!(
                "{} was written by another cairn, in {}; this one reads row format \
                 {ROW_VERSION}: remove it to start from genesis (other validators, if any, \
                 bring the node up to date; a devnet starts afresh in a new folder)",
                self.path.display(),
                match format.as_deref() {
                    Some([v]) => format!("row format {v}"),
                    _ => "rows without a format".to_owned(),
                }
            )));
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> = rows
            .into_iter()
            .map(|(key, value)| match value.split_first() {
                Some((&ROW_VERSION, row)) => Ok((key, row.to_vec())),
                _ => Err(StoreError(format!(
                    "corrupt state: a row not in format {ROW_VERSION}"
                ))),
            })
            .collect::<Result<_, _>>()?;
        State::from_rows(rows.iter().map(|(k, v)| (&k[..], &v[..])))
            .map(Some)
            .map_err(|e| StoreError(format!("corrupt state: {e}")))
    }

    /// Writes `changes` (from [`State::take_changes`]) durably, all or
    /// nothing.
    pub fn save(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            txn.open_table(META)
                .map_err(err)?
                .insert(FORMAT_KEY, &[ROW_VERSION][..])
                .map_err(err)?;
            let mut table = txn.open_table(ROWS).map_err(err)?;
            let mut row = Vec::new();
            for change in changes {
                match &change.value {
                    Some(value) => {
                        row.clear();
                        row.push(ROW_VERSION);
                        row.extend_from_slice(value);
                        table.insert(&change.key[..], &row[..]).map(drop)
                    }
                    None => table.remove(&change.key[..]).map(drop),
                }
                .map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }
}

//! Node state in redb: small keyed records (jobs, results, leases,
//! undelivered reports) written in atomic batches.
//!
//! Values are opaque bytes: each role encodes its own records. A batch is
//! one redb transaction, durable when [`Db::write`] returns, so a record
//! acknowledged to a peer survives a crash.
//!
//! Every record is stored behind a version byte ([`RECORD_VERSION`]), and
//! the store names its format in a table of its own: a node never reads a
//! record another version of Cairn wrote in another encoding as if it were
//! its own (a lease whose terms gained a field would decode as garbage, or
//! not at all, and be skipped in silence). It says so and stops instead.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// The version of the encoding of every record this build writes: the byte
/// each stored value starts with. Raise it when any role's record encoding
/// changes (2: a result's signed receipt opens its commitment, so reports
/// carry no separate opening and answers to challenges keep the receipt).
pub const RECORD_VERSION: u8 = 2;

/// The store's own facts: its record format, under [`FORMAT_KEY`].
const META: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("meta");

/// The key of the record format in [`META`].
const FORMAT_KEY: &[u8] = b"record_version";

/// The tables a node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Requester: jobs by id.
    Jobs,
    /// Requester: task results by job id and task index.
    Results,
    /// Requester: leases it gave out, by id.
    LeasesGiven,
    /// Provider: leases it works under, by id.
    LeasesTaken,
    /// Provider: reports not yet acknowledged, by lease id and task.
    Reports,
    /// Provider: what opens each commitment it made, by lease id and task,
    /// kept while the commitment can be challenged.
    Answers,
    /// Both roles: ledger transactions signed but not yet known applied or
    /// refused, by the order they were queued in.
    Outbox,
    /// Provider: traces of disputed tasks, by lease id and task, kept while
    /// the lease lives.
    Traces,
    /// Requester: what it learned of each provider's results, by provider
    /// key.
    Trust,
    /// Provider: results delivered and not yet accepted, by lease id and
    /// task (the digest and fuel it would be paid for).
    Awaiting,
    /// Provider: its requesters' signed acceptances, by lease id and the
    /// acceptance's digest, kept until they are claimed on the ledger.
    Acceptances,
    /// Requester: challenges it posted on the ledger and follows until
    /// they are answered or claimed as withheld, by lease id and task (the
    /// provider's key).
    Challenges,
    /// Requester: cases against cheats it brings to the validators until
    /// a quorum attests them, by job, dispute and accused.
    Cases,
    /// Provider: requesters one of whose tasks declared a sliver of the
    /// work it took, by key (when it was found, ms): not bid for again.
    Shunned,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(match self {
            Table::Jobs => "jobs",
            Table::Results => "results",
            Table::LeasesGiven => "leases_given",
            Table::LeasesTaken => "leases_taken",
            Table::Reports => "reports",
            Table::Answers => "answers",
            Table::Outbox => "outbox",
            Table::Traces => "traces",
            Table::Trust => "trust",
            Table::Awaiting => "awaiting",
            Table::Acceptances => "acceptances",
            Table::Challenges => "challenges",
            Table::Cases => "cases",
            Table::Shunned => "shunned",
        })
    }

    const ALL: [Table; 14] = [
        Table::Jobs,
        Table::Results,
        Table::LeasesGiven,
        Table::LeasesTaken,
        Table::Reports,
        Table::Answers,
        Table::Outbox,
        Table::Traces,
        Table::Trust,
        Table::Awaiting,
        Table::Acceptances,
        Table::Challenges,
        Table::Cases,
        Table::Shunned,
    ];
}

/// A key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

/// One change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove (absent keys are fine).
    Delete(Table, Vec<u8>),
}

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct DbError {
    path: String,
    message: String,
}

/// The node's state store. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    db: Arc<Database>,
    path: String,
}

impl Db {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let name = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| DbError {
            path: name.clone(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
        }
        let db = Database::create(path).map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        let mut records = 0u64;
        for table in Table::ALL {
            let t = txn.open_table(table.definition()).map_err(|e| err(&e))?;
            records += t.len().map_err(|e| err(&e))?;
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let found = meta
                .get(FORMAT_KEY)
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_vec());
            match found.as_deref() {
                Some([RECORD_VERSION]) => {}
                None if records == 0 => {
                    meta.insert(FORMAT_KEY, &[RECORD_VERSION][..])
                        .map_err(|e| err(&e))?;
                }
                other => {
                    let format = match other {
                        Some([v]) => format!("format {v}"),
                        _ => "no record format (an early version)".to_owned(),
                    };
                    return Err(err(&format!(
                        "written by another version of Cairn, in {format}; this one reads \
                         format {RECORD_VERSION}. Move the folder aside to start afresh, or run \
                         the version that wrote it"
                    )));
                }
            }
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(Self {
            db: Arc::new(db),
            path: name,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> DbError {
        DbError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Applies `ops` atomically and durably.
    pub fn write(&self, ops: &[Op]) -> Result<(), DbError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        for op in ops {
            match op {
                Op::Put(table, key, value) => {
                    let mut t = txn
                        .open_table(table.definition())
                        .map_err(|e| self.err(e))?;
                    let mut versioned = Vec::with_capacity(1 + value.len());
                    versioned.push(RECORD_VERSION);
                    versioned.extend_from_slice(value);
                    t.insert(key.as_slice(), versioned.as_slice())
                        .map_err(|e| self.err(e))?;
                }
                Op::Delete(table, key) => {
                    let mut t = txn
                        .open_table(table.definition())
                        .map_err(|e| self.err(e))?;
                    t.remove(key.as_slice()).map_err(|e| self.err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// One record.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn
            .open_table(table.definition())
            .map_err(|e| self.err(e))?;
        t.get(key)
            .map_err(|e| self.err(e))?
            .map(|v| self.unversioned(table, v.value()))
            .transpose()
    }

    /// A stored value without its version byte, or why it cannot be read.
    fn unversioned(&self, table: Table, stored: &[u8]) -> Result<Vec<u8>, DbError> {
        match stored.split_first() {
            Some((&RECORD_VERSION, value)) => Ok(value.to_vec()),
            Some((version, _)) => Err(self.err(format!(
                "a record of {table:?} is in format {version}; this version of Cairn reads \
                 format {RECORD_VERSION}"
            ))),
            None => Err(self.err(format!("a record of {table:?} is empty"))),
        }
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<Record>, DbError> {
        self.scan_page(table, prefix, prefix, usize::MAX)
    }

    /// At most `limit` records whose key starts with `prefix`, from the
    /// first at or after `from`, in key order: a page of a long scan.
    pub fn scan_page(
        &self,
        table: Table,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, DbError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn
            .open_table(table.definition())
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.range(from.max(prefix)..).map_err(|e| self.err(e))? {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            if !key.value().starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((
                key.value().to_vec(),
                self.unversioned(table, value.value())?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_reopening_and_scans_respect_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Db::open(&path).unwrap();
            db.write(&[
                Op::Put(Table::Results, b"a1".to_vec(), b"x".to_vec()),
                Op::Put(Table::Results, b"a2".to_vec(), b"y".to_vec()),
                Op::Put(Table::Results, b"b1".to_vec(), b"z".to_vec()),
                Op::Put(Table::Jobs, b"a".to_vec(), b"job".to_vec()),
            ])
            .unwrap();
            db.write(&[Op::Delete(Table::Results, b"a2".to_vec())])
                .unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(
            db.scan(Table::Results, b"a").unwrap(),
            vec![(b"a1".to_vec(), b"x".to_vec())]
        );
        assert_eq!(db.get(Table::Jobs, b"a").unwrap(), Some(b"job".to_vec()));
        assert_eq!(db.get(Table::LeasesGiven, b"a").unwrap(), None);
    }

    #[test]
    fn records_carry_their_version_and_another_versions_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Db::open(&path).unwrap();
            db.write(&[Op::Put(Table::Jobs, b"a".to_vec(), b"job".to_vec())])
                .unwrap();
        }
        // On disk, behind its version byte; read without it.
        let raw = |path: &Path| {
            let db = Database::create(path).unwrap();
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(Table::Jobs.definition()).unwrap();
            t.get(&b"a"[..]).unwrap().map(|v| v.value().to_vec())
        };
        assert_eq!(raw(&path), Some([&[RECORD_VERSION][..], b"job"].concat()));
        assert_eq!(
            Db::open(&path).unwrap().get(Table::Jobs, b"a").unwrap(),
            Some(b"job".to_vec())
        );

        // A record another version wrote is refused by name, not decoded.
        let rewrite =
            |path: &Path, table: TableDefinition<&[u8], &[u8]>, key: &[u8], value: &[u8]| {
                let db = Database::create(path).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(table).unwrap().insert(key, value).unwrap();
                txn.commit().unwrap();
            };
        rewrite(&path, Table::Jobs.definition(), b"b", b"\x07job");
        let db = Db::open(&path).unwrap();
        let refused = db.scan(Table::Jobs, b"").unwrap_err().to_string();
        assert!(refused.contains("format 7"), "{refused}");
        assert!(db.get(Table::Jobs, b"b").is_err());
        assert_eq!(db.get(Table::Jobs, b"a").unwrap(), Some(b"job".to_vec()));
        drop(db);

        // A store of another format, or of records without a format (as
        // every store was before), is refused at opening.
        rewrite(&path, META, FORMAT_KEY, &[RECORD_VERSION - 1]);
        let refused = Db::open(&path).err().unwrap().to_string();
        let earlier = format!("in format {}", RECORD_VERSION - 1);
        assert!(
            refused.contains(&earlier) && refused.contains("Move the folder aside"),
            "{refused}"
        );
        let legacy = dir.path().join("legacy.redb");
        rewrite(&legacy, Table::Jobs.definition(), b"a", b"job");
        let refused = Db::open(&legacy).err().unwrap().to_string();
        assert!(refused.contains("no record format"), "{refused}");
        // An empty store takes this format.
        let fresh = dir.path().join("fresh.redb");
        drop(Db::open(&fresh).unwrap());
        assert!(Db::open(&fresh).is_ok());
    }

    #[test]
    fn a_page_starts_where_asked_stops_at_its_limit_and_stays_in_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("state.redb")).unwrap();
        let ops: Vec<Op> = [&b"a1"[..], b"a2", b"a3", b"b1"]
            .iter()
            .map(|k| Op::Put(Table::Results, k.to_vec(), k.to_vec()))
            .collect();
        db.write(&ops).unwrap();
        let keys = |from: &[u8], limit| -> Vec<Vec<u8>> {
            db.scan_page(Table::Results, b"a", from, limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(b"a", 2), [b"a1".to_vec(), b"a2".to_vec()]);
        assert_eq!(keys(b"a2", 10), [b"a2".to_vec(), b"a3".to_vec()]);
        // A start before the prefix starts at the prefix; one past it
        // finds nothing.
        assert_eq!(keys(b"0", 1), [b"a1".to_vec()]);
        assert!(keys(b"a4", 10).is_empty());
        assert!(keys(b"a", 0).is_empty());
    }
}

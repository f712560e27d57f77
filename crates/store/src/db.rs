//! Node state in redb: small keyed records (jobs, results, leases,
//! undelivered reports) written in atomic batches.
//!
//! Values are opaque bytes: each role encodes its own records. A batch is
//! one redb transaction, durable when [`Db::write`] returns, so a record
//! acknowledged to a peer survives a crash.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

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
        })
    }

    const ALL: [Table; 13] = [
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
        for table in Table::ALL {
            txn.open_table(table.definition()).map_err(|e| err(&e))?;
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
                    t.insert(key.as_slice(), value.as_slice())
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
        Ok(t.get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
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
            out.push((key.value().to_vec(), value.value().to_vec()));
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

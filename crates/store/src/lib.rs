//! store: node-local persistence: content-addressed blobs and the state of jobs and leases.
//!
//! [`BlobStore`] keeps blobs named by their [`ContentId`](cairn_wire::ContentId)
//! with the hashes needed to serve any range of them verifiably, and
//! [`Download`] fetches a blob range by range from untrusted peers, verifying
//! each range and resuming after a restart. See [`blob`] for the details.
//! [`Db`] keeps the small records of jobs, results and leases in redb.
#![deny(missing_docs)]

pub mod blob;
mod db;

pub use blob::{
    BlobError, BlobStore, CHECKPOINT_BYTES, CHUNK_GROUP_BYTES, Download, RANGE_BYTES_MAX,
    encoded_range_bytes, verify_range,
};
pub use db::{Db, DbError, Op, Record, Table};

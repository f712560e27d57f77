//! wire: Encode, hash, sign and identify everything Cairn nodes exchange or agree on.
//!
//! Two strangers can only verify each other's work if they turn the same
//! value into the same bytes. This crate fixes those bytes:
//!
//! - [`codec`] re-exports `commonware-codec`, the canonical binary encoding
//!   used for everything that is signed or hashed: fixed-width big-endian
//!   integers, length-prefixed sequences, and decoding that always takes an
//!   explicit size limit and rejects trailing bytes. [`text`] adds bounded
//!   UTF-8 strings.
//! - [`ContentId`] names a blob by its BLAKE3 digest.
//! - [`Keypair`], [`PublicKey`] and [`NodeId`] are ed25519 identities; a node
//!   id *is* its public key.
//! - [`Signed`] is a versioned, domain-separated signed envelope around any
//!   encodable payload.
//!
//! ```
//! use cairn_wire::{ContentId, Keypair, Signed};
//!
//! let key = Keypair::from_seed([7; 32]);
//! let signed = Signed::sign(&key, b"cairn/example", 42u64);
//! let bytes = signed.to_bytes();
//! let back = Signed::<u64>::from_bytes(&bytes, &()).unwrap();
//! assert_eq!(*back.verify(b"cairn/example").unwrap(), 42);
//! assert_eq!(ContentId::of(b"abc"), ContentId::of(b"abc"));
//! ```
#![deny(missing_docs)]

mod checked;
mod envelope;
mod error;
mod id;
mod identity;
pub mod manifest;
#[cfg(feature = "openapi")]
mod openapi;
mod secret;
pub mod text;
mod text_form;
pub mod tool;

pub use checked::remember_signatures;
/// The canonical encoding (`commonware-codec`), re-exported so every crate
/// encodes with the same version of it.
pub use commonware_codec as codec;
pub use envelope::{ATTESTATIONS_MAX, Attested, Signed};
pub use error::WireError;
pub use id::{ContentId, hex, parse_hex, parse_hex32};
pub use identity::{Batch, Keypair, NodeId, PublicKey, Signature};
pub use manifest::{OutputFile, ResultManifest};
pub use secret::{load_or_create_secret, load_secret, private_dir, random_seed};
pub use tool::ToolRequest;

/// Version of the wire format. It is the first byte of every envelope; a
/// decoder refuses versions it does not know rather than guessing.
pub const WIRE_VERSION: u8 = 1;

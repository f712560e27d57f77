//! How ids and keys appear in an OpenAPI document: as the lowercase hex
//! their JSON form is, so that a client generated from the document (or a
//! fuzzer driven by it) sends values of the right shape.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::{ContentId, PublicKey};

/// A string of 64 hex digits (32 bytes), written lowercase.
fn hex32(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9a-fA-F]{64}$"))
        .min_length(Some(64))
        .max_length(Some(64))
        .description(Some(description))
        .into()
}

impl utoipa::PartialSchema for ContentId {
    fn schema() -> RefOr<Schema> {
        hex32("A content id: the BLAKE3 digest of a blob's bytes, as 64 hex digits.")
    }
}

impl utoipa::ToSchema for ContentId {}

impl utoipa::PartialSchema for PublicKey {
    fn schema() -> RefOr<Schema> {
        hex32("An ed25519 public key (a node's identity), as 64 hex digits.")
    }
}

impl utoipa::ToSchema for PublicKey {}

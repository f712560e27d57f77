//! Ids and keys in text formats (JSON): as the hex [`Display`] writes them,
//! parsed back with [`FromStr`], so a malformed one is refused when the
//! document is read, with the reason `FromStr` gives.
//!
//! [`Display`]: std::fmt::Display
//! [`FromStr`]: std::str::FromStr

use serde::de::{Deserializer, Error};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::{ContentId, PublicKey};

macro_rules! as_text {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(D::Error::custom)
            }
        }
    };
}

as_text!(ContentId);
as_text!(PublicKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_hex_in_json_and_a_bad_one_is_refused_with_why() {
        let id = ContentId::of(b"frame 7");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ContentId>(&json).unwrap(), id);

        let key = crate::Keypair::from_seed([3; 32]).public();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);

        let short = serde_json::from_str::<PublicKey>("\"abcd\"").unwrap_err();
        assert!(short.to_string().contains("64 hex digits"), "{short}");
        let not_hex = format!("\"{}\"", "z".repeat(64));
        assert!(serde_json::from_str::<ContentId>(&not_hex).is_err());
        assert!(serde_json::from_str::<ContentId>("7").is_err());
    }
}

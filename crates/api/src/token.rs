//! The API token: the secret that opens a node's private routes, kept by
//! the node in its data folder and shown by its clients.

use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq as _;

/// The file in a node's data folder that holds its API token.
pub const TOKEN_FILE: &str = "api.token";

/// The secret that opens the API's private routes: 32 random bytes, kept
/// as hex in `<data dir>/api.token`, readable by its owner only.
#[derive(Clone)]
pub struct ApiToken {
    secret: [u8; 32],
}

impl ApiToken {
    /// Where the node whose data folder is `data_dir` keeps its token.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TOKEN_FILE)
    }

    /// The node's token, created on first start. A token file that others
    /// may read is refused, with the `chmod` that fixes it, as key files are.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, cairn_wire::WireError> {
        cairn_wire::load_or_create_secret(&Self::path(data_dir)).map(|secret| Self { secret })
    }

    /// The token of the node whose data folder is `data_dir`, for a client
    /// on the same machine; never creates one.
    pub fn load(data_dir: &Path) -> Result<Self, cairn_wire::WireError> {
        cairn_wire::load_secret(&Self::path(data_dir)).map(|secret| Self { secret })
    }

    /// A token given as text (64 hex digits), as `CAIRN_API_TOKEN` holds it.
    pub fn from_hex(text: &str) -> Result<Self, cairn_wire::WireError> {
        cairn_wire::parse_hex32(text.trim(), "API token").map(|secret| Self { secret })
    }

    /// The value of the `Authorization` header that shows this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", cairn_wire::hex(&self.secret))
    }

    /// Whether `presented` (the text after `Bearer `) is this token. The
    /// secret is compared in constant time, so how long a refusal takes
    /// says nothing about how much of a guess was right; parsing the guess
    /// first touches only the guess.
    pub fn accepts(&self, presented: &str) -> bool {
        cairn_wire::parse_hex32(presented, "API token")
            .is_ok_and(|guess| bool::from(guess.ct_eq(&self.secret)))
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never printed, not even in a debug log.
        f.write_str("ApiToken(…)")
    }
}

//! Opaque page tokens: a [`Cursor`] plus a fingerprint of the query it was
//! issued for, so a token replayed with other filters is refused instead of
//! silently skipping or repeating documents.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Cursor;

#[derive(Serialize, Deserialize)]
struct Token {
    k: i64,
    i: String,
    f: u64,
}

/// Why a page token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error("is not a valid page token")]
    Malformed,
    #[error("was issued for a different query")]
    OtherQuery,
}

/// A stable 64-bit FNV-1a hash of a query's canonical description.
pub fn fingerprint(canonical: &str) -> u64 {
    canonical.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub fn encode(cursor: &Cursor, fingerprint: u64) -> String {
    let token = Token {
        k: cursor.key,
        i: cursor.id.clone(),
        f: fingerprint,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// Decodes a token; the empty string means the first page.
pub fn decode(token: &str, fingerprint: u64) -> Result<Option<Cursor>, PageTokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > 1024 {
        return Err(PageTokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PageTokenError::Malformed)?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| PageTokenError::Malformed)?;
    if t.f != fingerprint {
        return Err(PageTokenError::OtherQuery);
    }
    Ok(Some(Cursor { key: t.k, id: t.i }))
}

/// [`decode`] for a request's `page_token` field: a refused token is
/// `INVALID_ARGUMENT` naming the field.
pub fn decode_request(
    token: &str,
    fingerprint: u64,
) -> Result<Option<Cursor>, focusforge_core::Error> {
    decode(token, fingerprint)
        .map_err(|e| focusforge_core::Error::invalid("page_token", e.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trips(key in any::<i64>(), id in "\\PC{0,40}", fp in any::<u64>()) {
            let cursor = Cursor { key, id };
            let token = encode(&cursor, fp);
            prop_assert_eq!(decode(&token, fp), Ok(Some(cursor)));
            prop_assert_eq!(decode(&token, fp ^ 1), Err(PageTokenError::OtherQuery));
        }

        #[test]
        fn garbage_never_panics(token in "\\PC{0,200}") {
            let _ = decode(&token, 7);
        }
    }

    #[test]
    fn empty_is_first_page_and_junk_is_malformed() {
        assert_eq!(decode("", 1), Ok(None));
        assert_eq!(decode("!!!", 1), Err(PageTokenError::Malformed));
        assert_eq!(decode("aGVsbG8", 1), Err(PageTokenError::Malformed));
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }
}

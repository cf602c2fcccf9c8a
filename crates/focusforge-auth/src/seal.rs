//! Third-party tokens at rest (Google Calendar, Spotify): AES-256-GCM under a key from the configuration, with a
//! random nonce per value and the user id as associated data (a sealed
//! value copied into another user's document does not open).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use focusforge_core::Error;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A key of 32 bytes, base64.
    pub fn from_base64(key: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| anyhow::anyhow!("token_key must be base64"))?;
        anyhow::ensure!(
            bytes.len() == 32,
            "token_key must be 32 bytes (base64 of 32 random bytes)"
        );
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("token_key is not an AES-256 key"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, user: &str, plain: &str) -> Result<String, Error> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(user.as_bytes()),
                &mut data,
            )
            .map_err(|_| Error::internal("cannot seal a token"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, user: &str, sealed: &str) -> Result<String, Error> {
        let bad = || Error::internal("a stored token does not open with the configured token_key");
        let mut bytes = STANDARD.decode(sealed).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes.try_into().map_err(|_| bad())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user.as_bytes()),
                &mut data,
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

/// A secret that names its user: `<base64url(user)>.<secret>` (feed
/// tokens, OAuth states), so the store, which is keyed by user, can be
/// asked for the one secret to compare with.
pub fn named(user: &focusforge_core::UserId, secret: &str) -> String {
    use base64::Engine as _;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user.as_str());
    format!("{u}.{secret}")
}

/// The user and secret of a [`named`] secret.
pub fn name_of(token: &str) -> Option<(focusforge_core::UserId, &str)> {
    use base64::Engine as _;
    if token.len() > 512 {
        return None;
    }
    let (u, secret) = token.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(u)
        .ok()?;
    Some((
        focusforge_core::UserId::parse(&String::from_utf8(bytes).ok()?).ok()?,
        secret,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_for_their_user_and_key() {
        let key = STANDARD.encode([7u8; 32]);
        let s = Sealer::from_base64(&key).unwrap_or_else(|e| panic!("{e}"));
        let sealed = s.seal("alice", "refresh-123").unwrap_or_default();
        assert!(!sealed.contains("refresh-123"));
        assert_eq!(
            s.open("alice", &sealed).ok().as_deref(),
            Some("refresh-123")
        );
        assert!(s.open("bob", &sealed).is_err());
        let other =
            Sealer::from_base64(&STANDARD.encode([8u8; 32])).unwrap_or_else(|e| panic!("{e}"));
        assert!(other.open("alice", &sealed).is_err());
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}

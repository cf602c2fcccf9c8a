//! Bearer tokens. Every FocusForge server verifies `authorization: Bearer
//! <JWT>` itself (HS256 with a shared secret, or RS256 with a public key); the
//! token's `sub` is the user. Unsigned (`alg: none`) tokens, tokens signed with
//! another algorithm than the configured one, expired tokens and tokens
//! without `exp` or `sub` are rejected.

pub mod jwks;
pub mod seal;

use std::io::Write;
use std::path::{Path, PathBuf};

use focusforge_core::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Where the embedded default keeps its generated HS256 secret.
pub const DEV_SECRET_FILE: &str = "auth/dev-secret";

/// The claims FocusForge reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Not valid before this time (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Why a request is unauthenticated. The messages are safe to send to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    #[error("token subject is not a valid user id: {0}")]
    BadSubject(String),
}

/// How tokens are signed.
#[derive(Clone)]
pub enum KeyMaterial {
    /// A shared secret, at least 32 bytes.
    Hs256(Vec<u8>),
    /// An RSA public key (PEM) to verify, and optionally the private key (PEM)
    /// to mint.
    Rs256 {
        public_pem: Vec<u8>,
        private_pem: Option<Vec<u8>>,
    },
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        match self {
            KeyMaterial::Hs256(_) => f.write_str("Hs256(<secret>)"),
            KeyMaterial::Rs256 { .. } => f.write_str("Rs256(<keys>)"),
        }
    }
}

/// Errors in the configured keys; reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("jwt secret must be at least 32 bytes")]
    ShortSecret,
    #[error("bad rsa key: {0}")]
    BadRsaKey(String),
    #[error("minting needs a private key, and only a public key is configured")]
    NoPrivateKey,
    #[error("bad jwks: {0}")]
    BadJwks(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// HS256 secrets shorter than the hash output are refused (RFC 7518 3.2).
fn checked_secret(secret: &[u8]) -> Result<&[u8], KeyError> {
    if secret.len() < 32 {
        return Err(KeyError::ShortSecret);
    }
    Ok(secret)
}

/// The token of an `authorization: Bearer <token>` header value (the scheme
/// in any case), or `None` for another scheme or an empty token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Clock skew allowed between token issuers and this server, by default.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// One key a [`Verifier`] accepts.
#[derive(Clone)]
struct VerifyKey {
    /// The `kid` tokens signed with it carry; `None` takes any.
    kid: Option<String>,
    key: DecodingKey,
    alg: Algorithm,
    /// From the JWKS URL (replaced on each refresh) rather than configured.
    from_jwks: bool,
}

/// What every key's validation shares.
#[derive(Clone)]
struct Rules {
    leeway: u64,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Verifies tokens against one or more keys: the configured key, the keys
/// being rotated out (several at once), and those of a JWKS URL. A token
/// naming a `kid` is checked against the keys with that kid (and those
/// without one); a token without one against every key of its algorithm.
/// Cheap to clone; clones share their keys, so a JWKS refresh reaches all.
#[derive(Clone)]
pub struct Verifier {
    keys: std::sync::Arc<std::sync::RwLock<std::sync::Arc<Vec<VerifyKey>>>>,
    rules: Rules,
    /// Set when a token named a kid no key has: the JWKS refresher looks.
    unknown_kid: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn decoding_key(keys: &KeyMaterial) -> Result<(DecodingKey, Algorithm), KeyError> {
    Ok(match keys {
        KeyMaterial::Hs256(secret) => (
            DecodingKey::from_secret(checked_secret(secret)?),
            Algorithm::HS256,
        ),
        KeyMaterial::Rs256 { public_pem, .. } => (
            DecodingKey::from_rsa_pem(public_pem)
                .map_err(|e| KeyError::BadRsaKey(e.to_string()))?,
            Algorithm::RS256,
        ),
    })
}

/// The most keys a JWKS document may hold.
pub const MAX_JWKS_KEYS: usize = 64;

impl Verifier {
    pub fn new(keys: &KeyMaterial, issuer: Option<&str>) -> Result<Self, KeyError> {
        let (key, alg) = decoding_key(keys)?;
        Ok(Self {
            keys: std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(vec![
                VerifyKey {
                    kid: None,
                    key,
                    alg,
                    from_jwks: false,
                },
            ]))),
            rules: Rules {
                leeway: DEFAULT_LEEWAY_SECS,
                issuer: issuer.map(str::to_owned),
                audience: None,
            },
            unknown_kid: std::sync::Arc::default(),
        })
    }

    /// Allows this much clock skew on `exp`, `nbf` and `iat`.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.rules.leeway = secs;
        self
    }

    /// Requires tokens to name `audience` in `aud`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.rules.audience = Some(audience.to_owned());
        self
    }

    /// Names the configured key's `kid`: tokens carrying another kid are
    /// not checked against it.
    pub fn with_kid(self, kid: &str) -> Self {
        self.update(|keys| {
            if let Some(first) = keys.iter_mut().find(|k| !k.from_jwks) {
                first.kid = Some(kid.to_owned());
            }
        });
        self
    }

    /// Also accepts tokens signed with `keys` (a key being rotated out).
    pub fn add_key(&self, keys: &KeyMaterial, kid: Option<&str>) -> Result<(), KeyError> {
        let (key, alg) = decoding_key(keys)?;
        self.update(|all| {
            all.push(VerifyKey {
                kid: kid.map(str::to_owned),
                key,
                alg,
                from_jwks: false,
            });
        });
        Ok(())
    }

    /// Replaces the keys taken from a JWKS document (RFC 7517) with those
    /// of `json`; keys without a kid, not for signatures, or of algorithms
    /// other than RS256 and HS256 are skipped. Returns how many were taken.
    pub fn set_jwks(&self, json: &[u8]) -> Result<usize, KeyError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(json).map_err(|e| KeyError::BadJwks(e.to_string()))?;
        if set.keys.len() > MAX_JWKS_KEYS {
            return Err(KeyError::BadJwks(format!(
                "{} keys, at most {MAX_JWKS_KEYS}",
                set.keys.len()
            )));
        }
        let mut taken = Vec::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(ref u) if *u != jsonwebtoken::jwk::PublicKeyUse::Signature
            ) {
                continue;
            }
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            taken.push(VerifyKey {
                kid: Some(kid),
                key,
                alg,
                from_jwks: true,
            });
        }
        let n = taken.len();
        self.update(|all| {
            all.retain(|k| !k.from_jwks);
            all.extend(taken);
        });
        Ok(n)
    }

    /// Whether a token named a kid no key had since the last call.
    pub fn take_unknown_kid(&self) -> bool {
        self.unknown_kid
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    fn update(&self, f: impl FnOnce(&mut Vec<VerifyKey>)) {
        let mut guard = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let mut keys = (**guard).clone();
        f(&mut keys);
        *guard = std::sync::Arc::new(keys);
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.rules.leeway;
        validation.validate_nbf = true;
        match &self.rules.audience {
            Some(aud) => {
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.validate_aud = false;
            }
        }
        if let Some(iss) = &self.rules.issuer {
            validation.set_issuer(&[iss]);
        }
        validation
    }

    /// Verifies the value of an `authorization` header.
    pub fn verify_header(&self, header: Option<&str>) -> Result<UserId, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        self.verify(bearer_token(header).ok_or(AuthError::Malformed)?)
    }

    /// Verifies a bare token and returns its subject.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let candidates = keys.iter().filter(|k| {
            k.alg == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        let mut found = None;
        let mut tried = 0;
        for key in candidates {
            tried += 1;
            match jsonwebtoken::decode::<UserClaims>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => {
                    found = Some(Ok(data));
                    break;
                }
                // The signature matched: the token is this key's, and the
                // claims decide.
                Err(e) if !matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    found = Some(Err(match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                        _ => AuthError::Invalid,
                    }));
                    break;
                }
                Err(_) => {}
            }
        }
        if tried == 0 && header.kid.is_some() {
            self.unknown_kid
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let data = found.unwrap_or(Err(AuthError::Invalid))?;
        // A token issued in the future is not valid yet either.
        let now = jsonwebtoken::get_current_timestamp();
        if data.claims.claims.iat > now.saturating_add(self.rules.leeway) {
            return Err(AuthError::NotYetValid);
        }
        // A mesh token is never a user's, whatever key signed it.
        if data.claims.act.is_some() {
            return Err(AuthError::Invalid);
        }
        let claims = data.claims.claims;
        UserId::parse(&claims.sub).map_err(|e| AuthError::BadSubject(subject_reason(&e)))
    }
}

/// A user token's claims as read: the claims plus what marks a mesh token.
#[derive(Deserialize)]
struct UserClaims {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    act: Option<String>,
}

/// The audience of the tokens a FocusForge component mints to act for a user
/// inside the mesh (planner actions, background jobs, timers).
pub const MESH_AUDIENCE: &str = "focusforge-mesh";

/// How long a mesh token is valid: one call, with room for clock skew.
pub const MESH_TOKEN_TTL_SECS: u64 = 60;

/// The claims of a mesh token: the user acted for, and the acting component.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeshClaims {
    sub: String,
    act: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// Who a verified call is for: the user, and the component acting for them
/// when the call came from inside the mesh rather than from the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub acting: Option<String>,
}

/// The mesh's own HS256 key: components mint short-lived tokens naming the
/// user and themselves, and every service verifies them beside user tokens.
/// The gateway verifies user tokens only, so a mesh token from outside is
/// refused there. Independent of how user tokens are signed, so it works for
/// HS256 and RS256 (public key only) deployments alike.
#[derive(Clone)]
pub struct MeshKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(<secret>)")
    }
}

impl MeshKey {
    /// A key from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        let secret = checked_secret(secret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = DEFAULT_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.set_audience(&[MESH_AUDIENCE]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The key derived from an HS256 user-token secret (SHA-256 of a label
    /// and the secret), for deployments that configure no mesh secret:
    /// whoever holds the user secret can mint user tokens anyway.
    pub fn derived(user_secret: &[u8]) -> Result<Self, KeyError> {
        use sha2::Digest;
        checked_secret(user_secret)?;
        let mut hash = sha2::Sha256::new();
        hash.update(b"focusforge-mesh-key-v1\0");
        hash.update(user_secret);
        Self::new(&hash.finalize())
    }

    /// A token for `component` acting for `user`, valid for
    /// [`MESH_TOKEN_TTL_SECS`].
    pub fn mint(&self, user: &UserId, component: &str) -> Result<String, KeyError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = MeshClaims {
            sub: user.as_str().to_owned(),
            act: component.to_owned(),
            aud: MESH_AUDIENCE.to_owned(),
            iat: now,
            exp: now + MESH_TOKEN_TTL_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| KeyError::BadRsaKey(e.to_string()))
    }

    /// The user and component a mesh token names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<MeshClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let user = UserId::parse(&data.claims.sub)
            .map_err(|e| AuthError::BadSubject(subject_reason(&e)))?;
        Ok(Principal {
            user,
            acting: Some(data.claims.act),
        })
    }
}

/// Verifies what a service accepts: user tokens, and mesh tokens when the
/// service is part of a mesh.
#[derive(Clone)]
pub struct ServiceVerifier {
    pub users: std::sync::Arc<Verifier>,
    pub mesh: Option<MeshKey>,
}

impl ServiceVerifier {
    /// Verifies the value of an `authorization` header: a user token, else a
    /// mesh token.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = bearer_token(header).ok_or(AuthError::Malformed)?;
        match self.users.verify(token) {
            Ok(user) => Ok(Principal { user, acting: None }),
            Err(AuthError::Invalid) => match &self.mesh {
                Some(mesh) => mesh.verify(token),
                None => Err(AuthError::Invalid),
            },
            Err(e) => Err(e),
        }
    }
}

fn subject_reason(e: &focusforge_core::Error) -> String {
    match e {
        focusforge_core::Error::InvalidArgument(v) => {
            v.first().map(|v| v.description.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// Mints tokens for local use and tests.
pub struct Minter {
    key: EncodingKey,
    alg: Algorithm,
    issuer: Option<String>,
    kid: Option<String>,
    audience: Option<String>,
}

impl Minter {
    pub fn new(keys: &KeyMaterial, issuer: Option<&str>) -> Result<Self, KeyError> {
        let (key, alg) = match keys {
            KeyMaterial::Hs256(secret) => (
                EncodingKey::from_secret(checked_secret(secret)?),
                Algorithm::HS256,
            ),
            KeyMaterial::Rs256 {
                private_pem: Some(pem),
                ..
            } => (
                EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError::BadRsaKey(e.to_string()))?,
                Algorithm::RS256,
            ),
            KeyMaterial::Rs256 {
                private_pem: None, ..
            } => return Err(KeyError::NoPrivateKey),
        };
        Ok(Self {
            key,
            alg,
            issuer: issuer.map(str::to_owned),
            kid: None,
            audience: None,
        })
    }

    /// Tokens carry this `kid` in their header.
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    /// Tokens carry this `aud`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// A token for `user`, valid for `ttl_secs` from now.
    pub fn mint(&self, user: &UserId, ttl_secs: u64) -> Result<String, KeyError> {
        let now = jsonwebtoken::get_current_timestamp();
        self.mint_claims(&Claims {
            sub: user.as_str().to_owned(),
            iat: now,
            exp: now + ttl_secs,
            iss: self.issuer.clone(),
            nbf: None,
        })
    }

    /// A token with exactly these claims.
    pub fn mint_claims(&self, claims: &Claims) -> Result<String, KeyError> {
        #[derive(Serialize)]
        struct WithAudience<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
        }
        let mut header = Header::new(self.alg);
        header.kid.clone_from(&self.kid);
        let claims = WithAudience {
            claims,
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| KeyError::BadRsaKey(e.to_string()))
    }
}

/// Reads the data directory's dev secret, creating a random one (readable
/// only by its owner) on first use.
pub fn load_or_create_dev_secret(data_dir: &Path) -> Result<Vec<u8>, KeyError> {
    load_or_create_secret(&data_dir.join(DEV_SECRET_FILE))
}

/// Reads a hex secret from `path`, creating a random one (readable only by
/// its owner) on first use.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let path = path.to_path_buf();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => return hex::decode(text.trim()).map_err(|_| KeyError::ShortSecret),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    let secret: [u8; 32] = rand::random();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp).map_err(io)?;
        file.write_all(hex::encode(secret).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    // Two processes starting at once: the first rename wins and both read it.
    if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
        std::fs::rename(&tmp, &path).map_err(io)?;
    }
    let _ = std::fs::remove_file(&tmp);
    let text = std::fs::read_to_string(&path).map_err(io)?;
    hex::decode(text.trim()).map_err(|_| KeyError::ShortSecret)
}

#[cfg(test)]
mod tests;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/rsa-public.pem");
const OTHER_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/other-private.pem");

fn alice() -> UserId {
    UserId::parse("alice").expect("user")
}

fn hs() -> KeyMaterial {
    KeyMaterial::Hs256(SECRET.to_vec())
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[test]
fn hs256_round_trip() {
    let token = Minter::new(&hs(), None)
        .expect("minter")
        .mint(&alice(), 60)
        .expect("mint");
    let verifier = Verifier::new(&hs(), None).expect("verifier");
    assert_eq!(verifier.verify(&token), Ok(alice()));
    assert_eq!(
        verifier.verify_header(Some(&format!("Bearer {token}"))),
        Ok(alice())
    );
}

#[test]
fn header_shape_is_checked() {
    let verifier = Verifier::new(&hs(), None).expect("verifier");
    assert_eq!(verifier.verify_header(None), Err(AuthError::Missing));
    assert_eq!(
        verifier.verify_header(Some("Basic abc")),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        verifier.verify_header(Some("Bearer ")),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        verifier.verify_header(Some("Bearer not.a.jwt")),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        verifier.verify_header(Some("Bearer garbage")),
        Err(AuthError::Invalid)
    );
}

#[test]
fn the_bearer_scheme_is_matched_in_any_case() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearerabc"), None);
    assert_eq!(bearer_token("Bearer   "), None);
    assert_eq!(bearer_token("Bearer"), None);
}

#[test]
fn expired_tokens_are_rejected() {
    let minter = Minter::new(&hs(), None).expect("minter");
    let claims = Claims {
        sub: "alice".into(),
        exp: now() - 3600,
        iat: now() - 7200,
        iss: None,
        nbf: None,
    };
    let token = minter.mint_claims(&claims).expect("mint");
    let verifier = Verifier::new(&hs(), None).expect("verifier");
    assert_eq!(verifier.verify(&token), Err(AuthError::Expired));
}

#[test]
fn wrong_key_is_rejected() {
    let other = KeyMaterial::Hs256(b"another-secret-another-secret-xx".to_vec());
    let token = Minter::new(&other, None)
        .expect("minter")
        .mint(&alice(), 60)
        .expect("mint");
    let verifier = Verifier::new(&hs(), None).expect("verifier");
    assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
}

fn unsigned(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

#[test]
fn alg_none_is_rejected() {
    let token = unsigned(&serde_json::json!({"sub": "alice", "exp": now() + 60}));
    for keys in [
        hs(),
        KeyMaterial::Rs256 {
            public_pem: RSA_PUBLIC.to_vec(),
            private_pem: None,
        },
    ] {
        let verifier = Verifier::new(&keys, None).expect("verifier");
        assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
    }
}

#[test]
fn missing_claims_are_rejected() {
    let minter = Minter::new(&hs(), None).expect("minter");
    let verifier = Verifier::new(&hs(), None).expect("verifier");
    let no_sub = Claims {
        sub: String::new(),
        exp: now() + 60,
        iat: now(),
        iss: None,
        nbf: None,
    };
    let token = minter.mint_claims(&no_sub).expect("mint");
    assert_eq!(
        verifier.verify(&token),
        Err(AuthError::BadSubject("must be 1-128 bytes".into()))
    );
    // A token without exp at all.
    let header = jsonwebtoken::Header::new(Algorithm::HS256);
    let token = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "alice"}),
        &EncodingKey::from_secret(SECRET),
    )
    .expect("encode");
    assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
}

#[test]
fn rs256_round_trip_and_wrong_key() {
    let keys = KeyMaterial::Rs256 {
        public_pem: RSA_PUBLIC.to_vec(),
        private_pem: Some(RSA_PRIVATE.to_vec()),
    };
    let token = Minter::new(&keys, Some("focusforge"))
        .expect("minter")
        .mint(&alice(), 60);
    let verifier = Verifier::new(&keys, Some("focusforge")).expect("verifier");
    assert_eq!(verifier.verify(&token.expect("mint")), Ok(alice()));

    let other = KeyMaterial::Rs256 {
        public_pem: vec![],
        private_pem: Some(OTHER_PRIVATE.to_vec()),
    };
    let forged = Minter::new(&other, Some("focusforge"))
        .expect("minter")
        .mint(&alice(), 60);
    assert_eq!(
        verifier.verify(&forged.expect("mint")),
        Err(AuthError::Invalid)
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected_by_rs256() {
    // The classic algorithm-confusion attack: HMAC keyed with the public key.
    let confused = KeyMaterial::Hs256(RSA_PUBLIC.to_vec());
    let token = Minter::new(&confused, None)
        .expect("minter")
        .mint(&alice(), 60)
        .expect("mint");
    let keys = KeyMaterial::Rs256 {
        public_pem: RSA_PUBLIC.to_vec(),
        private_pem: None,
    };
    let verifier = Verifier::new(&keys, None).expect("verifier");
    assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
}

#[test]
fn issuer_is_enforced_when_configured() {
    let token = Minter::new(&hs(), Some("elsewhere"))
        .expect("minter")
        .mint(&alice(), 60);
    let verifier = Verifier::new(&hs(), Some("focusforge")).expect("verifier");
    assert_eq!(
        verifier.verify(&token.expect("mint")),
        Err(AuthError::Invalid)
    );
}

#[test]
fn short_secrets_are_refused() {
    assert!(matches!(
        Verifier::new(&KeyMaterial::Hs256(b"short".to_vec()), None),
        Err(KeyError::ShortSecret)
    ));
}

#[test]
fn dev_secret_is_random_persistent_and_private() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let first = load_or_create_dev_secret(a.path()).expect("create");
    assert_eq!(first.len(), 32);
    assert_eq!(load_or_create_dev_secret(a.path()).expect("reload"), first);
    assert_ne!(load_or_create_dev_secret(b.path()).expect("other"), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join(DEV_SECRET_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "dev secret must not be readable by others");
    }
}

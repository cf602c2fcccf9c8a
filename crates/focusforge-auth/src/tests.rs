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

const JWKS: &[u8] = include_bytes!("../tests/fixtures/jwks.json");

fn rs_minter() -> Minter {
    Minter::new(
        &KeyMaterial::Rs256 {
            public_pem: Vec::new(),
            private_pem: Some(RSA_PRIVATE.to_vec()),
        },
        None,
    )
    .expect("minter")
}

#[test]
fn several_keys_at_once_for_rotation() {
    let old = KeyMaterial::Hs256(b"the-old-secret-being-rotated-out-0123".to_vec());
    let new = KeyMaterial::Hs256(b"the-new-secret-being-rotated-in-01234".to_vec());
    let v = Verifier::new(&new, None).expect("verifier");
    v.add_key(&old, None).expect("old key");
    for keys in [&new, &old] {
        let t = Minter::new(keys, None)
            .expect("minter")
            .mint(&alice(), 60)
            .expect("mint");
        assert_eq!(v.verify(&t).expect("accepted"), alice());
    }
    let other = KeyMaterial::Hs256(b"a-third-secret-nobody-configured-0123".to_vec());
    let t = Minter::new(&other, None)
        .expect("minter")
        .mint(&alice(), 60)
        .expect("mint");
    assert_eq!(v.verify(&t), Err(AuthError::Invalid));
}

#[test]
fn a_kid_picks_its_key_and_an_unknown_kid_is_noticed() {
    let a = KeyMaterial::Hs256(b"key-a-key-a-key-a-key-a-key-a-key-a".to_vec());
    let b = KeyMaterial::Hs256(b"key-b-key-b-key-b-key-b-key-b-key-b".to_vec());
    let v = Verifier::new(&a, None).expect("verifier").with_kid("a");
    v.add_key(&b, Some("b")).expect("b");
    let signed = |keys: &KeyMaterial, kid: &str| {
        Minter::new(keys, None)
            .expect("minter")
            .with_kid(kid)
            .mint(&alice(), 60)
            .expect("mint")
    };
    assert!(v.verify(&signed(&a, "a")).is_ok());
    assert!(v.verify(&signed(&b, "b")).is_ok());
    // The right key under the wrong kid is not tried.
    assert_eq!(v.verify(&signed(&b, "a")), Err(AuthError::Invalid));
    assert!(!v.take_unknown_kid());
    assert_eq!(v.verify(&signed(&a, "c")), Err(AuthError::Invalid));
    assert!(
        v.take_unknown_kid(),
        "a kid no key has is reported for a JWKS refresh"
    );
    assert!(!v.take_unknown_kid());
}

#[test]
fn the_audience_is_checked_when_configured() {
    let v = Verifier::new(&hs(), None)
        .expect("verifier")
        .with_audience("focusforge-api");
    let m = Minter::new(&hs(), None).expect("minter");
    let none = m.mint(&alice(), 60).expect("mint");
    assert_eq!(v.verify(&none), Err(AuthError::Invalid), "no aud");
    let wrong = Minter::new(&hs(), None)
        .expect("minter")
        .with_audience("another-api")
        .mint(&alice(), 60)
        .expect("mint");
    assert_eq!(v.verify(&wrong), Err(AuthError::Invalid), "wrong aud");
    let right = Minter::new(&hs(), None)
        .expect("minter")
        .with_audience("focusforge-api")
        .mint(&alice(), 60)
        .expect("mint");
    assert_eq!(v.verify(&right).expect("right aud"), alice());
    // Without an audience configured, aud is not looked at.
    let plain = Verifier::new(&hs(), None).expect("verifier");
    assert!(plain.verify(&right).is_ok());
}

#[test]
fn keys_from_a_jwks_document_verify_their_tokens_and_are_replaced_on_refresh() {
    let v = Verifier::new(&hs(), None).expect("verifier");
    let token = rs_minter()
        .with_kid("test-rsa-1")
        .mint(&alice(), 60)
        .expect("mint");
    assert_eq!(v.verify(&token), Err(AuthError::Invalid), "before the JWKS");
    assert_eq!(
        v.set_jwks(JWKS).expect("jwks"),
        1,
        "the encryption key is skipped"
    );
    assert_eq!(v.verify(&token).expect("after the JWKS"), alice());
    // The configured key still works beside them.
    let local = Minter::new(&hs(), None)
        .expect("minter")
        .mint(&alice(), 60)
        .expect("mint");
    assert!(v.verify(&local).is_ok());
    // A refresh without the key drops it.
    assert_eq!(v.set_jwks(br#"{"keys":[]}"#).expect("empty"), 0);
    assert_eq!(v.verify(&token), Err(AuthError::Invalid));
    assert!(v.set_jwks(b"not json").is_err());
    let many = format!(
        r#"{{"keys":[{}]}}"#,
        vec![r#"{"kty":"oct","k":"AA"}"#; 65].join(",")
    );
    assert!(
        v.set_jwks(many.as_bytes()).is_err(),
        "a document over the bound"
    );
}

#[test]
fn an_expired_token_of_a_second_key_says_expired() {
    let old = KeyMaterial::Hs256(b"the-old-secret-being-rotated-out-0123".to_vec());
    let v = Verifier::new(&hs(), None).expect("verifier").with_leeway(0);
    v.add_key(&old, None).expect("old");
    let expired = Minter::new(&old, None)
        .expect("minter")
        .mint_claims(&Claims {
            sub: "alice".into(),
            exp: now() - 100,
            iat: now() - 200,
            iss: None,
            nbf: None,
        })
        .expect("mint");
    assert_eq!(v.verify(&expired), Err(AuthError::Expired));
}

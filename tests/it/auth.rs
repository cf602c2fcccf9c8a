use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use focusforge_auth::{Claims, KeyMaterial, Minter, Verifier};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    StartTaskRequest, Task, UpdateTaskRequest,
};
use focusforge_proto::users::v1::GetProfileRequest;
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{SECRET, Server, authed, bearer, config, token, token_with};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn bad_tokens() -> Vec<(&'static str, Option<String>)> {
    let expired = token_with(&Claims {
        sub: "alice".into(),
        exp: now() - 600,
        iat: now() - 1200,
        iss: None,
        nbf: None,
    });
    let wrong_key = Minter::new(
        &KeyMaterial::Hs256(b"some-other-secret-some-other-sec".to_vec()),
        None,
    )
    .expect("minter")
    .mint(&focusforge_core::UserId::parse("alice").expect("user"), 600)
    .expect("mint");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 600));
    let alg_none = format!("{header}.{claims}.");
    vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        ("expired", Some(expired)),
        ("wrong key", Some(wrong_key)),
        ("alg none", Some(alg_none)),
    ]
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated_at_the_gateway() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    for (what, tok) in bad_tokens() {
        let msg = CreateTaskRequest {
            title: "x".into(),
            ..Default::default()
        };
        let req = match &tok {
            Some(t) => bearer(t, msg),
            None => tonic::Request::new(msg),
        };
        let err = tasks.create_task(req).await.expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
    }
    // A header that is not a bearer token at all.
    let mut req = tonic::Request::new(ListTasksRequest::default());
    req.metadata_mut().insert(
        "authorization",
        "Basic YWxpY2U6cHc=".parse().expect("value"),
    );
    assert_eq!(
        tasks.list_tasks(req).await.expect_err("basic").code(),
        Code::Unauthenticated
    );
    // Nothing was created by any of the refused calls.
    let listed = tasks
        .list_tasks(authed("alice", ListTasksRequest::default()))
        .await
        .expect("list");
    assert!(listed.into_inner().tasks.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn services_verify_tokens_without_the_gateway() {
    // The routes a service process registers, called directly: the service's
    // own interceptor must refuse what the gateway would.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    let backends = focusforge_server::Backends::open(&cfg)
        .await
        .expect("backends");
    let verifier = Arc::new(
        Verifier::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("verifier"),
    );
    let routes = focusforge_server::service_routes(&cfg, &backends, verifier)
        .await
        .expect("routes")
        .routes;
    let mut direct = TaskServiceClient::new(routes);
    for (what, tok) in bad_tokens() {
        let msg = ListTasksRequest::default();
        let req = match &tok {
            Some(t) => bearer(t, msg),
            None => tonic::Request::new(msg),
        };
        let err = direct.list_tasks(req).await.expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}");
    }
    let ok = direct
        .list_tasks(bearer(&token("alice"), ListTasksRequest::default()))
        .await;
    assert!(ok.is_ok(), "a valid token passes: {ok:?}");
}

#[tokio::test]
async fn another_users_task_is_not_found_like_a_missing_one() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    let task: Task = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "alice's".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    let missing = tasks
        .get_task(authed(
            "bob",
            GetTaskRequest {
                id: "no-such-task".into(),
            },
        ))
        .await
        .expect_err("missing");
    let id = task.id.clone();
    let attempts: Vec<(&str, tonic::Status)> = vec![
        (
            "get",
            tasks
                .get_task(authed("bob", GetTaskRequest { id: id.clone() }))
                .await
                .expect_err("get"),
        ),
        (
            "start",
            tasks
                .start_task(authed("bob", StartTaskRequest { id: id.clone() }))
                .await
                .expect_err("start"),
        ),
        (
            "complete",
            tasks
                .complete_task(authed(
                    "bob",
                    CompleteTaskRequest {
                        id: id.clone(),
                        proof_text: "mine now".into(),
                    },
                ))
                .await
                .expect_err("complete"),
        ),
        (
            "update",
            tasks
                .update_task(authed(
                    "bob",
                    UpdateTaskRequest {
                        task: Some(Task {
                            id: id.clone(),
                            title: "stolen".into(),
                            ..Default::default()
                        }),
                        update_mask: Some(FieldMask {
                            paths: vec!["title".into()],
                        }),
                        expected_version: 0,
                    },
                ))
                .await
                .expect_err("update"),
        ),
        (
            "delete",
            tasks
                .delete_task(authed("bob", DeleteTaskRequest { id: id.clone() }))
                .await
                .expect_err("delete"),
        ),
    ];
    for (what, err) in attempts {
        assert_eq!(err.code(), Code::NotFound, "{what}");
        assert_eq!(
            err.message(),
            missing.message(),
            "{what} must not reveal the task exists"
        );
    }
    let bobs = tasks
        .list_tasks(authed("bob", ListTasksRequest::default()))
        .await
        .expect("list");
    assert!(bobs.into_inner().tasks.is_empty());
    let still = tasks
        .get_task(authed("alice", GetTaskRequest { id }))
        .await
        .expect("alice still sees it");
    let still = still.into_inner().task.expect("task");
    assert_eq!(still, task, "bob's attempts changed nothing");

    let profile = server
        .users()
        .await
        .get_profile(authed("bob", GetProfileRequest {}))
        .await
        .expect("profile");
    assert_eq!(
        profile.into_inner().profile.expect("profile").user_id,
        "bob"
    );
    server.stop().await;
}

const RSA_PRIVATE: &[u8] =
    include_bytes!("../../crates/focusforge-auth/tests/fixtures/rsa-private.pem");
const JWKS: &[u8] = include_bytes!("../../crates/focusforge-auth/tests/fixtures/jwks.json");

/// Serves `body` at any path over HTTP/1.1, counting the requests.
async fn serve_jwks(
    body: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = counted.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn tokens_of_an_identity_providers_jwks_are_taken_by_kid() {
    let (url, hits) = serve_jwks(JWKS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.auth.jwks_url = Some(url);
    let server = Server::start_in(dir, cfg).await;
    let idp = Minter::new(
        &KeyMaterial::Rs256 {
            public_pem: Vec::new(),
            private_pem: Some(RSA_PRIVATE.to_vec()),
        },
        None,
    )
    .expect("minter");
    let user = focusforge_core::UserId::parse("carol").expect("user");
    let good = idp.with_kid("test-rsa-1").mint(&user, 600).expect("mint");
    crate::harness::eventually("the jwks is loaded", || async {
        server
            .tasks()
            .await
            .list_tasks(bearer(&good, ListTasksRequest::default()))
            .await
            .is_ok()
    })
    .await;
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // The same key under a kid the document does not have, and the
    // encryption key's kid: refused.
    for kid in ["not-in-the-jwks", "for-encryption"] {
        let t = Minter::new(
            &KeyMaterial::Rs256 {
                public_pem: Vec::new(),
                private_pem: Some(RSA_PRIVATE.to_vec()),
            },
            None,
        )
        .expect("minter")
        .with_kid(kid)
        .mint(&user, 600)
        .expect("mint");
        let err = server
            .tasks()
            .await
            .list_tasks(bearer(&t, ListTasksRequest::default()))
            .await
            .expect_err(kid);
        assert_eq!(err.code(), Code::Unauthenticated, "{kid}");
    }
    // The configured HS256 key still works beside the provider's.
    assert!(
        server
            .tasks()
            .await
            .list_tasks(authed("carol", ListTasksRequest::default()))
            .await
            .is_ok()
    );
    server.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_previous_key_and_the_audience_is_required() {
    const OLD: &str = "the-previous-secret-being-rotated-out-0123";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.auth.previous_jwt_secrets = vec![OLD.into()];
    cfg.auth.audience = Some("focusforge-api".into());
    cfg.auth.kid = Some("2026-12".into());
    let minted = focusforge_server::mint_token(&cfg, "dora", std::time::Duration::from_secs(600))
        .expect("focusforge token");
    let server = Server::start_in(dir, cfg).await;
    let user = focusforge_core::UserId::parse("dora").expect("user");
    let old = |aud: Option<&str>| {
        let m = Minter::new(&KeyMaterial::Hs256(OLD.as_bytes().to_vec()), None).expect("minter");
        match aud {
            Some(a) => m.with_audience(a),
            None => m,
        }
        .mint(&user, 600)
        .expect("mint")
    };
    let other = Minter::new(
        &KeyMaterial::Hs256(b"a-key-nobody-configured-0123456789abcdef".to_vec()),
        None,
    )
    .expect("minter")
    .with_audience("focusforge-api")
    .mint(&user, 600)
    .expect("mint");
    for (what, tok, ok) in [
        ("the current key, as `focusforge token` mints", minted, true),
        (
            "the previous key, with the audience",
            old(Some("focusforge-api")),
            true,
        ),
        ("the previous key, without an audience", old(None), false),
        (
            "the previous key, another audience",
            old(Some("someone-else")),
            false,
        ),
        ("a key nobody configured", other, false),
        ("the current key without an audience", token("dora"), false),
    ] {
        let res = server
            .tasks()
            .await
            .list_tasks(bearer(&tok, ListTasksRequest::default()))
            .await;
        match ok {
            true => assert!(res.is_ok(), "{what}: {res:?}"),
            false => assert_eq!(res.expect_err(what).code(), Code::Unauthenticated, "{what}"),
        }
    }
    server.stop().await;
}

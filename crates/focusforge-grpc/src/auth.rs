use focusforge_auth::ServiceVerifier;
use focusforge_core::UserId;
use focusforge_mesh::Caller;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Verifies the bearer token of every call (a user's, or a mesh token a
/// component minted to act for a user) and stores the caller in the request
/// extensions: the [`UserId`] and the [`Caller`] to pass on to other
/// services. Each service runs it itself, so a service reached inside the
/// cluster without the gateway is still protected.
#[derive(Clone)]
pub struct AuthInterceptor(ServiceVerifier);

impl AuthInterceptor {
    pub fn new(verifier: ServiceVerifier) -> Self {
        Self(verifier)
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.to_str());
        let header = match header {
            Some(Ok(v)) => Some(v.to_owned()),
            Some(Err(_)) => return Err(Status::unauthenticated("malformed authorization header")),
            None => None,
        };
        let principal = self
            .0
            .verify_header(header.as_deref())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let token = header
            .as_deref()
            .and_then(focusforge_auth::bearer_token)
            .unwrap_or_default()
            .to_owned();
        req.extensions_mut().insert(principal.user.clone());
        req.extensions_mut()
            .insert(Caller::with_token(principal, token));
        Ok(req)
    }
}

/// The verified caller of a request that passed [`AuthInterceptor`].
pub fn caller<T>(req: &Request<T>) -> Result<UserId, Status> {
    req.extensions()
        .get::<UserId>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// Who the request is for, to call other services on their behalf.
pub fn identity<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// The caller of an RPC only other services may make: a component acting
/// for a user with a mesh identity. A user's own token is
/// `PERMISSION_DENIED`.
pub fn service_caller<T>(req: &Request<T>, method: &str) -> Result<Caller, Status> {
    let caller = identity(req)?;
    if caller.acting.is_none() {
        return Err(Status::permission_denied(format!(
            "{method} is for FocusForge's own services; a user's token cannot call it"
        )));
    }
    Ok(caller)
}

use std::sync::Arc;

use focusforge_auth::Verifier;
use focusforge_core::UserId;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Verifies the bearer token of every call and stores the caller's
/// [`UserId`] in the request extensions. Each service runs it itself, so a
/// service reached inside the cluster without the gateway is still protected.
#[derive(Clone)]
pub struct AuthInterceptor(Arc<Verifier>);

impl AuthInterceptor {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self(verifier)
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.to_str());
        let header = match header {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(Status::unauthenticated("malformed authorization header")),
            None => None,
        };
        let user = self
            .0
            .verify_header(header)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        req.extensions_mut().insert(user);
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

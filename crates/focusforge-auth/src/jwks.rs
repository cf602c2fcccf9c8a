//! An identity provider's JSON Web Key Set, kept loaded in a [`Verifier`].

use std::sync::Arc;
use std::time::Duration;

use crate::Verifier;

/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Fetches the identity provider's keys into `verifier` now, then every
/// `every`, and within 30 s of a token naming a kid no key has.
pub async fn keep_loaded(url: String, every: Duration, verifier: Arc<Verifier>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the JWKS");
            return;
        }
    };
    let fetch = || async {
        let res = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        if res
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("the document is over 1 MiB".to_owned());
        }
        let body = res.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("the document is over 1 MiB".to_owned());
        }
        verifier.set_jwks(&body).map_err(|e| e.to_string())
    };
    let mut last = None::<tokio::time::Instant>;
    loop {
        let due = last.is_none_or(|t| t.elapsed() >= every)
            || (verifier.take_unknown_kid()
                && last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)));
        if due {
            match fetch().await {
                Ok(n) => tracing::info!(keys = n, "jwks keys loaded"),
                Err(error) => tracing::warn!(%error, "cannot load the jwks; keeping the keys held"),
            }
            last = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

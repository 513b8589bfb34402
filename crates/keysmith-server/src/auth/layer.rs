//! The tower layer that authenticates every RPC and checks its scope.
use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use keysmith_core::{error::reasons, Error, ErrorKind};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use super::{
    limits::{PeerFailures, Refusal, TokenLimits},
    methods::{self, Access},
    scope_missing, Caller, Properties,
};
use crate::{
    admission::Budget,
    config::{AuthConfig, AuthMode, ReflectionAccess},
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Clone)]
pub struct AuthLayer {
    state: Arc<AuthState>,
}

struct AuthState {
    /// None in development mode.
    tokens: Option<HashMap<[u8; 32], Token>>,
    /// Who every caller is in development mode (made once, cloned cheaply).
    development: Caller,
    reflection: ReflectionAccess,
    failures: PeerFailures,
}

struct Token {
    caller: Caller,
    limits: TokenLimits,
}

impl AuthLayer {
    /// Expects a validated configuration (hashes are 64 hex digits, scopes known).
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let now = Instant::now();
        let tokens = match config.mode {
            AuthMode::Development => None,
            AuthMode::Tokens => {
                let mut map = HashMap::new();
                for t in &config.tokens {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(&t.sha256, &mut hash).map_err(|_| {
                        anyhow::anyhow!("auth.tokens {:?}: sha256 is not 64 hex digits", t.id)
                    })?;
                    let properties = if t.properties.iter().any(|p| p == "*") {
                        Properties::All
                    } else {
                        Properties::Only(t.properties.iter().cloned().collect())
                    };
                    let scopes = t
                        .scopes
                        .iter()
                        .map(|s| s.parse())
                        .collect::<Result<_, _>>()
                        .map_err(|why| anyhow::anyhow!("auth.tokens {:?}: {why}", t.id))?;
                    let token = Token {
                        caller: Caller::new(t.id.clone(), properties, scopes),
                        limits: TokenLimits::new(t.max_in_flight, t.requests_per_minute, now),
                    };
                    map.insert(hash, token);
                }
                Some(map)
            }
        };
        Ok(Self {
            state: Arc::new(AuthState {
                tokens,
                development: Caller::development(),
                reflection: config.reflection,
                failures: PeerFailures::new(
                    config.max_failures_per_minute,
                    Duration::from_secs(60),
                ),
            }),
        })
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    state: Arc<AuthState>,
}

/// What the layer decided for one request: who calls, and the budget the
/// call is served within once its request has arrived (crate::admission).
enum Verdict {
    Pass(Option<Caller>, Option<Budget>),
    Refuse(Error),
}

impl AuthState {
    fn judge<B>(&self, request: &http::Request<B>) -> Verdict {
        let scope = match methods::access(request.uri().path()) {
            Access::Open => return Verdict::Pass(None, None),
            Access::Reflection if self.reflection == ReflectionAccess::Open => {
                return Verdict::Pass(None, None)
            }
            Access::Reflection => None,
            Access::Scoped(scope) => Some(scope),
        };
        let Some(tokens) = &self.tokens else {
            crate::observe::note_caller(self.development.token_id());
            return Verdict::Pass(Some(self.development.clone()), None);
        };
        let now = Instant::now();
        let peer = peer_ip(request);
        if let Some(wait) = peer.and_then(|p| self.failures.blocked(p, now)) {
            return Verdict::Refuse(
                Error::new(
                    ErrorKind::ResourceExhausted,
                    reasons::AUTH_RATE_LIMITED,
                    "too many failed authentications from this address; wait before retrying",
                )
                .with_retry_after(wait),
            );
        }
        let token = match bearer(request) {
            Ok(token) => token,
            Err(error) => {
                if let Some(p) = peer {
                    self.failures.failed(p, now);
                }
                return Verdict::Refuse(error);
            }
        };
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let Some(entry) = tokens.get(&hash) else {
            if let Some(p) = peer {
                self.failures.failed(p, now);
            }
            return Verdict::Refuse(Error::new(
                ErrorKind::Unauthenticated,
                reasons::TOKEN_INVALID,
                "the bearer token is not valid",
            ));
        };
        crate::observe::note_caller(entry.caller.token_id());
        if let Some(scope) = scope {
            if !entry.caller.has(scope) {
                return Verdict::Refuse(scope_missing(scope));
            }
        }
        match entry.limits.admit(now) {
            Ok(in_flight) => Verdict::Pass(Some(entry.caller.clone()), Some(in_flight)),
            Err(Refusal::RateLimited { retry_after }) => Verdict::Refuse(
                Error::new(
                    ErrorKind::ResourceExhausted,
                    reasons::TOKEN_RATE_LIMITED,
                    "this token has used its requests for now",
                )
                .with_retry_after(retry_after),
            ),
        }
    }
}

/// The token of `authorization: Bearer <token>`. Never logged.
fn bearer<B>(request: &http::Request<B>) -> Result<&str, Error> {
    let missing = || {
        Error::new(
            ErrorKind::Unauthenticated,
            reasons::TOKEN_MISSING,
            "this call needs `authorization: Bearer <token>` metadata",
        )
    };
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

fn peer_ip<B>(request: &http::Request<B>) -> Option<IpAddr> {
    crate::connection::remote_addr(request).map(|a| a.ip())
}

impl<S, B, R> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self.state.judge(&request) {
            Verdict::Refuse(error) => {
                tracing::info!(
                    method = %request.uri().path(),
                    reason = error.reason(),
                    "call refused by authentication"
                );
                let response = crate::convert::status(error).into_http();
                Box::pin(async move { Ok(response) })
            }
            Verdict::Pass(caller, in_flight) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                if let Some(in_flight) = in_flight {
                    request.extensions_mut().insert(in_flight);
                }
                Box::pin(inner.call(request))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri("/keysmith.v1.AccessService/GetKey");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_required_and_case_insensitive() {
        assert_eq!(bearer(&request(Some("Bearer abc"))).unwrap(), "abc");
        assert_eq!(bearer(&request(Some("bearer abc"))).unwrap(), "abc");
        for bad in [None, Some("abc"), Some("Basic abc"), Some("Bearer  ")] {
            let err = bearer(&request(bad)).unwrap_err();
            assert_eq!(err.reason(), reasons::TOKEN_MISSING, "{bad:?}");
        }
    }

    #[test]
    fn a_refusal_never_echoes_the_token() {
        let err = bearer(&request(Some("Basic s3cr3t-token"))).unwrap_err();
        assert!(!err.message().contains("s3cr3t"));
    }
}

//! Who is calling and what they may do: bearer tokens (kept as SHA-256
//! hashes), their scopes and the properties they may act on.
//!
//! The tower layer in [`layer`] authenticates every RPC and checks its scope
//! by method; handlers then check the property of the request with
//! [`Caller::property`], because only they have decoded the body.
pub mod layer;
mod limits;
pub mod methods;

use std::{collections::BTreeSet, fmt, str::FromStr, sync::Arc};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use keysmith_core::{
    audit::AuditOrigin,
    error::{bounded, quoted, reasons},
    Error, ErrorKind,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use layer::AuthLayer;

/// What a token may do. Scopes do not imply one another: an administrator
/// that must also issue keys is given both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    KeysIssue,
    KeysRevoke,
    KeysRead,
    /// See credential data (PINs, card, QR and mobile-key data,
    /// compartments); without it they come back redacted.
    KeysReadSecrets,
    /// Entrances, drivers, the lock simulator, webhooks and the audit log.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::KeysIssue,
        Scope::KeysRevoke,
        Scope::KeysRead,
        Scope::KeysReadSecrets,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::KeysIssue => "keys.issue",
            Scope::KeysRevoke => "keys.revoke",
            Scope::KeysRead => "keys.read",
            Scope::KeysReadSecrets => "keys.read_secrets",
            Scope::Admin => "keysmith.admin",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?} (known: {})", known.join(", "))
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The properties a token may act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Properties {
    All,
    Only(BTreeSet<String>),
}

impl Properties {
    pub fn contains(&self, property_id: &str) -> bool {
        match self {
            Properties::All => true,
            Properties::Only(set) => set.contains(property_id),
        }
    }
}

/// An authenticated caller. Carries the token's id, never the token.
#[derive(Clone, Debug)]
pub struct Caller(Arc<CallerInner>);

#[derive(Debug)]
struct CallerInner {
    token_id: String,
    properties: Properties,
    scopes: BTreeSet<Scope>,
}

/// The id under which development mode's callers are audited.
pub const DEVELOPMENT_CALLER: &str = "development";

impl Caller {
    pub fn new(token_id: String, properties: Properties, scopes: BTreeSet<Scope>) -> Self {
        Self(Arc::new(CallerInner {
            token_id,
            properties,
            scopes,
        }))
    }

    /// Development mode: everything, everywhere, for anyone on loopback.
    pub fn development() -> Self {
        Self::new(
            DEVELOPMENT_CALLER.into(),
            Properties::All,
            Scope::ALL.into_iter().collect(),
        )
    }

    pub fn token_id(&self) -> &str {
        &self.0.token_id
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.0.scopes.contains(&scope)
    }

    /// Whether the token acts on every property (`properties = ["*"]`),
    /// as what protects them all needs.
    pub fn acts_on_every_property(&self) -> bool {
        self.0.properties == Properties::All
    }

    pub fn reads_secrets(&self) -> bool {
        self.has(Scope::KeysReadSecrets)
    }

    fn may_act_on(&self, property_id: &str) -> bool {
        self.0.properties.contains(property_id)
    }

    /// A property the token was not granted is answered as one that does
    /// not exist, so that a token cannot learn which other properties (and
    /// keys, reservations, entrances) keysmith holds.
    pub fn property(&self, property_id: &str) -> Result<(), Error> {
        if property_id.is_empty() {
            return Err(Error::invalid_field(
                reasons::FIELD_REQUIRED,
                "property_id",
                "is required",
            ));
        }
        if self.may_act_on(property_id) {
            return Ok(());
        }
        Err(Error::not_found(
            reasons::PROPERTY_NOT_FOUND,
            format!("property {} was not found", quoted(property_id)),
        )
        .with_context("property_id", bounded(property_id)))
    }

    /// How the audit log names this caller, calling from `peer`.
    pub fn audit_origin(&self, peer: Option<std::net::SocketAddr>) -> AuditOrigin {
        AuditOrigin {
            actor: self.token_id().to_owned(),
            peer: peer.map(|p| p.to_string()),
            reads_secrets: self.reads_secrets(),
        }
    }
}

pub fn scope_missing(scope: Scope) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        reasons::SCOPE_MISSING,
        format!("the token lacks the scope {scope}"),
    )
    .with_context("scope", scope.as_str())
}

/// The caller the auth layer attached to this request.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            crate::convert::status(Error::new(
                ErrorKind::Unauthenticated,
                reasons::TOKEN_MISSING,
                "this call needs a bearer token",
            ))
        })
}

/// The stored form of a token: lowercase hex SHA-256 of the whole token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `ks_` and 256 random bits, base64url.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ks_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_their_names_only() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        let err = "keys.write".parse::<Scope>().unwrap_err();
        assert!(
            err.contains("keys.write") && err.contains("keys.issue"),
            "{err}"
        );
    }

    #[test]
    fn another_property_is_not_found_and_names_no_more_than_asked() {
        let caller = Caller::new(
            "front-desk".into(),
            Properties::Only(["hotel-a".to_owned()].into()),
            [Scope::KeysRead].into(),
        );
        assert!(caller.property("hotel-a").is_ok());
        let err = caller.property("hotel-b").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.reason(), reasons::PROPERTY_NOT_FOUND);
    }

    #[test]
    fn generated_tokens_are_distinct_and_hash_to_hex() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with("ks_") && a.len() > 40);
        let h = hash_token(&a);
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn debug_of_a_caller_shows_the_id_not_a_token() {
        let caller = Caller::development();
        assert!(format!("{caller:?}").contains(DEVELOPMENT_CALLER));
    }
}

//! Where a key stands at Seam, read from its access grant and the grant's
//! access methods (both as Seam's API definition has them): keysmith's
//! credentials, and a state that is ACTIVE only when every access method
//! the grant requested is issued and deliverable. Pure: no I/O.
use keysmith_core::{
    capability::CredentialMode,
    driver::ProvisionState,
    key::{warnings, Credential, CredentialData, Warning},
    Secret,
};
use serde_json::Value;

use crate::DRIVER_NAME;

/// A key's credentials at Seam, its state there, and what to tell.
#[derive(Debug)]
pub struct Standing {
    pub credentials: Vec<Credential>,
    pub state: ProvisionState,
    pub warnings: Vec<Warning>,
}

/// keysmith's mode for a Seam access method mode.
pub fn keysmith_mode(mode: &str) -> Option<CredentialMode> {
    match mode {
        "code" => Some(CredentialMode::Pin),
        "card" => Some(CredentialMode::Card),
        "mobile_key" => Some(CredentialMode::MobileKey),
        _ => None,
    }
}

/// Seam's access method mode for a keysmith credential mode.
pub fn seam_mode(mode: CredentialMode) -> Option<&'static str> {
    match mode {
        CredentialMode::Pin => Some("code"),
        CredentialMode::Card => Some("card"),
        CredentialMode::MobileKey => Some("mobile_key"),
        CredentialMode::Qr | CredentialMode::KeyStorage => None,
    }
}

fn flag(v: &Value, name: &str) -> bool {
    v.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn text<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// `SEAM_<CODE>` warnings for Seam's `warnings` or `errors` items.
fn seam_notices(items: Option<&Value>, code_field: &str, out: &mut Vec<Warning>) {
    for item in items.and_then(Value::as_array).into_iter().flatten() {
        if let (Some(code), Some(message)) = (text(item, code_field), text(item, "message")) {
            let w = Warning::new(format!("SEAM_{}", code.to_ascii_uppercase()), message);
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
}

/// One access method as a keysmith credential, and whether it can be
/// delivered now: issued, and carrying what the holder needs (a PIN's code,
/// a mobile key's link; a card is written at an encoder from its id).
fn credential(method: &Value, mode: CredentialMode, entrance_ids: &[String]) -> (Credential, bool) {
    let id = text(method, "access_method_id")
        .unwrap_or_default()
        .to_owned();
    let issued = flag(method, "is_issued");
    let data = if !issued {
        None
    } else {
        match mode {
            CredentialMode::Pin => {
                text(method, "code").map(|c| CredentialData::Pin(Secret::new(c.to_owned())))
            }
            CredentialMode::MobileKey => text(method, "instant_key_url")
                .map(|u| CredentialData::MobileKey(Secret::new(u.to_owned()))),
            // Seam does not hand out card data: the card is written at an
            // encoder; keysmith hands out the access method to encode.
            _ => Some(CredentialData::Card(Secret::new(id.clone()))),
        }
    };
    let deliverable = data.is_some();
    (
        Credential {
            mode,
            driver: DRIVER_NAME.to_owned(),
            entrance_ids: entrance_ids.to_vec(),
            data: data.unwrap_or(CredentialData::Pending),
            credential_id: id,
            encoding_required: flag(method, "is_encoding_required"),
        },
        deliverable,
    )
}

/// A credential not created at Seam yet.
pub fn pending(mode: CredentialMode, entrance_ids: &[String]) -> Credential {
    Credential {
        mode,
        driver: DRIVER_NAME.to_owned(),
        entrance_ids: entrance_ids.to_vec(),
        data: CredentialData::Pending,
        credential_id: String::new(),
        encoding_required: false,
    }
}

/// What keysmith knows when it cannot read the access methods yet: one
/// pending credential per requested mode, still issuing.
pub fn unknown(modes: &[CredentialMode], entrance_ids: &[String]) -> Standing {
    Standing {
        credentials: modes.iter().map(|m| pending(*m, entrance_ids)).collect(),
        state: ProvisionState::Issuing,
        warnings: Vec::new(),
    }
}

/// Where a grant stands. Each access method the grant requested
/// (`requested_access_methods`, with the ids of the methods created for it)
/// must be issued and deliverable for the key to be ACTIVE; a card that
/// needs encoding makes it ENCODING_REQUIRED; anything not yet created,
/// issued or deliverable keeps it ISSUING; an error on the grant (Seam's
/// `cannot_create_requested_access_methods`) FAILS it, with a warning that
/// says what Seam reported.
pub fn of_grant(grant: &Value, methods: &[Value], entrance_ids: &[String]) -> Standing {
    let mut credentials = Vec::new();
    let mut warnings = Vec::new();
    let mut issuing = false;
    let mut encoding = false;
    let mut used = vec![false; methods.len()];
    let requested = grant
        .get("requested_access_methods")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &requested {
        let Some(mode) = text(r, "mode").and_then(keysmith_mode) else {
            continue;
        };
        let ids: Vec<&str> = r
            .get("created_access_method_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mine: Vec<usize> = methods
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                !used[*i]
                    && text(m, "access_method_id").is_some_and(|id| ids.contains(&id))
                    && text(m, "mode").and_then(keysmith_mode) == Some(mode)
            })
            .map(|(i, _)| i)
            .collect();
        if mine.is_empty() {
            issuing = true;
            credentials.push(pending(mode, entrance_ids));
            continue;
        }
        for i in mine {
            used[i] = true;
            let (c, deliverable) = credential(&methods[i], mode, entrance_ids);
            issuing |= !deliverable;
            encoding |= c.encoding_required;
            if let (Some(asked), CredentialData::Pin(got)) = (text(r, "code"), &c.data) {
                if got.expose() != asked {
                    warnings.push(Warning::new(
                        warnings::PIN_CHANGED,
                        "Seam issued another code than the one asked for (it is in use at a door)",
                    ));
                }
            }
            credentials.push(c);
        }
    }
    for m in methods {
        seam_notices(m.get("warnings"), "warning_code", &mut warnings);
    }
    seam_notices(grant.get("warnings"), "warning_code", &mut warnings);
    let failed = grant
        .get("errors")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    seam_notices(grant.get("errors"), "error_code", &mut warnings);
    let state = if failed {
        ProvisionState::Failed
    } else if issuing || requested.is_empty() {
        ProvisionState::Issuing
    } else if encoding {
        ProvisionState::EncodingRequired
    } else {
        ProvisionState::Active
    };
    Standing {
        credentials,
        state,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(requested: Value, errors: Value) -> Value {
        json!({
            "access_grant_id": "g1",
            "requested_access_methods": requested,
            "warnings": [],
            "errors": errors,
        })
    }

    fn doors() -> Vec<String> {
        vec!["door".into()]
    }

    #[test]
    fn active_only_when_every_requested_method_is_issued_and_deliverable() {
        let g = grant(
            json!([
                { "mode": "code", "created_access_method_ids": ["m1"] },
                { "mode": "mobile_key", "created_access_method_ids": ["m2"] },
            ]),
            json!([]),
        );
        let code = json!({ "access_method_id": "m1", "mode": "code", "is_issued": true, "code": "1234", "warnings": [] });
        let key = json!({ "access_method_id": "m2", "mode": "mobile_key", "is_issued": true, "instant_key_url": "https://ik.seam.co/x", "warnings": [] });
        assert_eq!(
            of_grant(&g, &[code.clone(), key.clone()], &doors()).state,
            ProvisionState::Active
        );
        // Nothing listed (yet): issuing, one pending credential per mode.
        let s = of_grant(&g, &[], &doors());
        assert_eq!(s.state, ProvisionState::Issuing);
        assert_eq!(s.credentials.len(), 2);
        // One method missing, or issued without its code: issuing.
        assert_eq!(
            of_grant(&g, std::slice::from_ref(&code), &doors()).state,
            ProvisionState::Issuing
        );
        let mut no_code = code;
        no_code["code"] = Value::Null;
        assert_eq!(
            of_grant(&g, &[no_code, key], &doors()).state,
            ProvisionState::Issuing
        );
    }

    #[test]
    fn a_grant_error_fails_the_key_and_says_what_seam_reported() {
        let g = grant(
            json!([{ "mode": "card", "created_access_method_ids": [] }]),
            json!([{
                "error_code": "cannot_create_requested_access_methods",
                "message": "No card could be created.",
                "created_at": "2030-01-01T00:00:00.000Z",
            }]),
        );
        let s = of_grant(&g, &[], &doors());
        assert_eq!(s.state, ProvisionState::Failed);
        assert_eq!(
            s.warnings[0].code,
            "SEAM_CANNOT_CREATE_REQUESTED_ACCESS_METHODS"
        );
        assert_eq!(s.warnings[0].message, "No card could be created.");
    }

    #[test]
    fn a_card_needs_encoding_and_another_code_than_asked_is_said() {
        let g = grant(
            json!([
                { "mode": "card", "created_access_method_ids": ["c"] },
                { "mode": "code", "code": "4321", "created_access_method_ids": ["p"] },
            ]),
            json!([]),
        );
        let card = json!({ "access_method_id": "c", "mode": "card", "is_issued": true, "is_encoding_required": true, "warnings": [] });
        let pin = json!({ "access_method_id": "p", "mode": "code", "is_issued": true, "code": "9999", "warnings": [] });
        let s = of_grant(&g, &[card, pin], &doors());
        assert_eq!(s.state, ProvisionState::EncodingRequired);
        assert!(s.warnings.iter().any(|w| w.code == warnings::PIN_CHANGED));
    }
}

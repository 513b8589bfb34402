//! Page tokens (`keysmith_core::page`) as callers send them back: any
//! string with any query. Decoding never panics and refuses with
//! INVALID_PAGE_TOKEN; a token keysmith made for a query gives back its key
//! id for that query and for no other caller.
#![no_main]

use arbitrary::Arbitrary;
use keysmith_core::{key::KeyState, page, reasons, request::ListKeysRequest, ErrorKind};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    property_id: String,
    reservation_key: Option<String>,
    entrance_id: Option<String>,
    holder_id: Option<String>,
    states: Vec<u8>,
    include_revoked: bool,
    caller: String,
    page_size: i32,
    /// What the caller sends as the token.
    token: String,
    /// A key id keysmith would continue after.
    after: String,
}

const STATES: [KeyState; 7] = [
    KeyState::Issuing,
    KeyState::Active,
    KeyState::EncodingRequired,
    KeyState::Revoked,
    KeyState::Expired,
    KeyState::Revoking,
    KeyState::Failed,
];

fuzz_target!(|input: Input| {
    let mut req = ListKeysRequest {
        property_id: input.property_id,
        page_size: input.page_size,
        page_token: input.token,
        reservation_key: input.reservation_key,
        entrance_id: input.entrance_id,
        holder_id: input.holder_id,
        states: input
            .states
            .iter()
            .map(|s| STATES[usize::from(*s) % STATES.len()])
            .collect(),
        include_revoked: input.include_revoked,
        caller: input.caller,
    };
    let _ = req.validate();
    match page::decode(&req) {
        Ok(None) => assert!(req.page_token.is_empty()),
        Ok(Some(_)) => {}
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert_eq!(e.reason(), reasons::INVALID_PAGE_TOKEN);
        }
    }

    // keysmith's own token comes back as the key id it was made for...
    let token = page::encode(&req, &input.after);
    req.page_token = token.clone();
    assert_eq!(page::decode(&req).unwrap(), Some(input.after.clone()));
    // ...whatever the page size and the order of the states asked for...
    req.page_size = req.page_size.wrapping_add(1);
    req.states.reverse();
    assert_eq!(page::decode(&req).unwrap(), Some(input.after));
    // ...and never for another caller.
    req.caller.push('x');
    assert_eq!(
        page::decode(&req).unwrap_err().reason(),
        reasons::INVALID_PAGE_TOKEN
    );
});

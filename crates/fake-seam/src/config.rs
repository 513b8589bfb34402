//! How a fake instance behaves over time. Seam does the slow parts of an
//! access grant (issuing credentials, tearing them down, encoding a card) in
//! the background; the fake does too, after these delays, or only when a test
//! says so (`None`), which is what deterministic tests want.

use std::time::Duration;

use crate::rules::ReservationErrorText;

/// Settings of one fake. `Default` makes every background step happen at
/// once, but still after the answer that caused it (`Some(ZERO)`), so a
/// client always sees the asynchronous shape (`is_issued: false` first);
/// [`FakeSeamConfig::manual`] makes them wait for the control API.
#[derive(Clone, Debug)]
pub struct FakeSeamConfig {
    /// How long access methods stay unissued after a grant is created or its
    /// times change. `None`: until `FakeSeam::issue_pending`.
    pub issue_delay: Option<Duration>,
    /// How long a deleted grant shows the `being_deleted` warning before it
    /// disappears. `None`: until `FakeSeam::finish_deletions`.
    pub delete_delay: Option<Duration>,
    /// First retry delay of a failed webhook delivery; doubles per attempt
    /// (capped at 64 times this).
    pub webhook_retry_delay: Duration,
    /// Attempts per webhook delivery, the first included (at least 1).
    pub webhook_max_attempts: u32,
    // ---- additions beyond the brief (documented in lib.rs) ----
    /// How long an `/access_methods/encode` action attempt stays `pending`.
    /// `None`: until `FakeSeam::finish_encodings`.
    pub encode_delay: Option<Duration>,
    /// A webhook endpoint slower than this fails the attempt.
    pub webhook_timeout: Duration,
    /// Which of the guide's texts (message or title) the reservation
    /// refusals answer as `message`: Seam does not document it.
    pub reservation_error_text: ReservationErrorText,
}

impl Default for FakeSeamConfig {
    fn default() -> Self {
        FakeSeamConfig {
            issue_delay: Some(Duration::ZERO),
            delete_delay: Some(Duration::ZERO),
            webhook_retry_delay: Duration::from_millis(20),
            webhook_max_attempts: 5,
            encode_delay: Some(Duration::ZERO),
            webhook_timeout: Duration::from_secs(5),
            reservation_error_text: ReservationErrorText::default(),
        }
    }
}

impl FakeSeamConfig {
    /// Nothing happens in the background: issuance, deletion and encoding
    /// wait for `issue_pending`, `finish_deletions` and `finish_encodings`.
    pub fn manual() -> Self {
        FakeSeamConfig {
            issue_delay: None,
            delete_delay: None,
            encode_delay: None,
            ..FakeSeamConfig::default()
        }
    }
}

//! Fault switches for testing a client's resilience. Each armed fault hits
//! the next `count` matching API requests (control routes under `/_fake/`
//! are never affected), or every one until cleared with [`UNTIL_CLEARED`].
//!
//! A request meets the faults twice: before it is handled (an outage or a
//! 429 answers instead of the API; a slow fault delays the handling) and,
//! if it reached its route's handler, after the change was committed (the
//! answer is dropped or withheld). Faults are consulted in arming order.

use std::time::Duration;

/// `count` meaning "until `clear_faults`".
pub const UNTIL_CLEARED: u32 = u32::MAX;

/// What to do to requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An empty 503, as during a Seam outage.
    Outage503,
    /// 429 with `Retry-After: <retry_after_s>` and an error body.
    TooManyRequests { retry_after_s: u64 },
    /// 429 whose `Retry-After` is an HTTP date `retry_after` from now (the
    /// other form RFC 9110 allows).
    TooManyRequestsUntil { retry_after: Duration },
    /// Handle the request only after this delay (the change happens even if
    /// the client gave up meanwhile).
    Slow(Duration),
    /// Handle the request to `route` (e.g. `/access_grants/create`), commit
    /// its change, then close the connection without an answer: the client
    /// sees a transport error and must not know whether it happened.
    DropResponseAfterCommit { route: String },
    /// Like `DropResponseAfterCommit`, but keep the connection open and never
    /// answer, so that the client times out. (Addition to the brief.)
    HangAfterCommit { route: String },
    /// `fault` on requests to `route` only (the others pass untouched and
    /// use none of its count).
    OnRoute { route: String, fault: Box<Fault> },
}

impl Fault {
    /// This fault on requests to `route` only.
    pub fn on(self, route: &str) -> Fault {
        Fault::OnRoute {
            route: route.to_string(),
            fault: Box::new(self),
        }
    }

    /// The fault as it applies to `route`: itself, or none.
    fn for_route(&self, route: &str) -> Option<&Fault> {
        match self {
            Fault::OnRoute { route: r, fault } if same_route(r, route) => fault.for_route(route),
            Fault::OnRoute { .. } => None,
            other => Some(other),
        }
    }
}

/// What to do before handling a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Before {
    Proceed { delay: Option<Duration> },
    Outage,
    TooManyRequests { retry_after: RetryAfter },
}

/// How a 429 says when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    Seconds(u64),
    /// An HTTP date this far from now.
    DateIn(Duration),
}

/// What to do with the answer of a handled request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Answer,
    Drop,
    Hang,
}

struct Armed {
    fault: Fault,
    remaining: u32,
}

impl Armed {
    /// Uses one of its hits; `false` once exhausted.
    fn take(&mut self) -> bool {
        if self.remaining == 0 {
            return false;
        }
        if self.remaining != UNTIL_CLEARED {
            self.remaining -= 1;
        }
        true
    }
}

#[derive(Default)]
pub(crate) struct Faults {
    armed: parking_lot::Mutex<Vec<Armed>>,
}

/// `/access_grants/create` and `access_grants/create` name the same route.
fn same_route(a: &str, b: &str) -> bool {
    a.trim_start_matches('/') == b.trim_start_matches('/')
}

impl Faults {
    pub fn arm(&self, fault: Fault, count: u32) {
        if count > 0 {
            self.armed.lock().push(Armed {
                fault,
                remaining: count,
            });
        }
    }

    pub fn clear(&self) {
        self.armed.lock().clear();
    }

    pub fn before(&self, route: &str) -> Before {
        let mut armed = self.armed.lock();
        let mut verdict = None;
        for a in armed.iter_mut() {
            let hit = match a.fault.for_route(route) {
                Some(Fault::Outage503) => Before::Outage,
                Some(Fault::TooManyRequests { retry_after_s }) => Before::TooManyRequests {
                    retry_after: RetryAfter::Seconds(*retry_after_s),
                },
                Some(Fault::TooManyRequestsUntil { retry_after }) => Before::TooManyRequests {
                    retry_after: RetryAfter::DateIn(*retry_after),
                },
                _ => continue,
            };
            if a.take() {
                verdict = Some(hit);
                break;
            }
        }
        // A refused request is not also slowed down.
        let verdict = verdict.unwrap_or_else(|| {
            let delay = armed
                .iter_mut()
                .find_map(|a| match a.fault.for_route(route) {
                    Some(Fault::Slow(d)) => {
                        let d = *d;
                        a.take().then_some(d)
                    }
                    _ => None,
                });
            Before::Proceed { delay }
        });
        armed.retain(|a| a.remaining > 0);
        verdict
    }

    pub fn after(&self, route: &str) -> After {
        let mut armed = self.armed.lock();
        let verdict = armed
            .iter_mut()
            .find_map(|a| {
                let verdict = match a.fault.for_route(route) {
                    Some(Fault::DropResponseAfterCommit { route: r }) if same_route(r, route) => {
                        After::Drop
                    }
                    Some(Fault::HangAfterCommit { route: r }) if same_route(r, route) => {
                        After::Hang
                    }
                    _ => return None,
                };
                a.take().then_some(verdict)
            })
            .unwrap_or(After::Answer);
        armed.retain(|a| a.remaining > 0);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_the_next_n_matching_requests() {
        let f = Faults::default();
        f.arm(Fault::Outage503, 2);
        f.arm(
            Fault::DropResponseAfterCommit {
                route: "access_grants/create".into(),
            },
            1,
        );
        assert_eq!(f.before("/x"), Before::Outage);
        assert_eq!(f.before("/x"), Before::Outage);
        assert_eq!(f.before("/x"), Before::Proceed { delay: None });
        assert_eq!(f.after("/access_grants/list"), After::Answer);
        assert_eq!(f.after("/access_grants/create"), After::Drop);
        assert_eq!(f.after("/access_grants/create"), After::Answer);
    }

    #[test]
    fn a_fault_on_a_route_spares_the_others() {
        let f = Faults::default();
        f.arm(Fault::Outage503.on("/access_methods/list"), 1);
        assert_eq!(
            f.before("/access_grants/create"),
            Before::Proceed { delay: None }
        );
        assert_eq!(f.before("/access_methods/list"), Before::Outage);
        assert_eq!(
            f.before("/access_methods/list"),
            Before::Proceed { delay: None }
        );
    }

    #[test]
    fn until_cleared_lasts_until_cleared() {
        let f = Faults::default();
        f.arm(Fault::TooManyRequests { retry_after_s: 3 }, UNTIL_CLEARED);
        f.arm(Fault::Slow(Duration::from_millis(5)), 1);
        for _ in 0..10 {
            assert_eq!(
                f.before("/x"),
                Before::TooManyRequests {
                    retry_after: RetryAfter::Seconds(3)
                }
            );
        }
        f.clear();
        assert_eq!(f.before("/x"), Before::Proceed { delay: None });
    }
}

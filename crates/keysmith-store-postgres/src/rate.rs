//! Rate budgets in the `rate_budgets` table (migration 0003): one row per
//! budget, spent by one statement that decides by the database's clock, so
//! that every replica's requests to one vendor account count against one
//! budget, whatever their own clocks say.
//!
//! The row is a GCRA (generic cell rate algorithm) state: the theoretical
//! arrival time (TAT) of the next request. A request conforms when it comes
//! no earlier than the TAT less the burst tolerance, and moves the TAT on
//! by the emission interval. Over any interval of length W at most
//! `W / interval + burst` requests conform; with a minute's worth of
//! `per_minute - burst` intervals, at most `per_minute` in any minute.
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use keysmith_core::{budget::RateBudgets, Result};

use crate::{connection, db_error};

/// Takes one request when it conforms, answering the wait 0; otherwise
/// changes nothing and answers how long until one does. `$2` is the
/// emission interval and `$3` the burst tolerance, in microseconds. A
/// concurrent taker waits for the row's lock and then decides on the
/// winner's TAT (READ COMMITTED re-checks the WHERE on the newest row), so
/// two replicas never spend one slot twice.
const TAKE: &str = "\
    WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us), \
    taken AS ( \
        INSERT INTO rate_budgets AS r (name, tat_micros) SELECT $1, now.us + $2 FROM now \
        ON CONFLICT (name) DO UPDATE \
            SET tat_micros = greatest(r.tat_micros, (SELECT us FROM now)) + $2 \
            WHERE r.tat_micros - $3 <= (SELECT us FROM now) \
        RETURNING 0::bigint AS wait \
    ) \
    SELECT wait FROM taken \
    UNION ALL \
    SELECT greatest(r.tat_micros - $3 - now.us, 1) FROM rate_budgets r, now \
    WHERE r.name = $1 AND NOT EXISTS (SELECT 1 FROM taken)";

/// (emission interval, burst tolerance) in microseconds for `per_minute`:
/// a tenth of the budget may go at once (at least one request), the rest
/// is spread over the minute.
fn shape(per_minute: u32) -> (i64, i64) {
    let burst = (per_minute / 10).max(1);
    let steady = per_minute.saturating_sub(burst).max(1);
    let interval = 60_000_000 / i64::from(steady);
    (interval, interval * i64::from(burst - 1))
}

/// The rate budgets of a PostgreSQL store.
pub(crate) struct PgRateBudgets {
    pub(crate) pool: Pool,
}

#[async_trait]
impl RateBudgets for PgRateBudgets {
    async fn take(&self, name: &str, per_minute: u32) -> Result<Option<Duration>> {
        let (interval, tolerance) = shape(per_minute);
        let client = connection(&self.pool).await?;
        let row = client
            .query_opt(TAKE, &[&name, &interval, &tolerance])
            .await
            .map_err(db_error)?;
        Ok(match row.map(|r| r.get::<_, i64>(0)) {
            Some(0) => None,
            Some(wait) => Some(Duration::from_micros(wait.unsigned_abs())),
            // The row was made by another taker after this statement's
            // snapshot, and its slot is taken: ask again an interval on.
            None => Some(Duration::from_micros(interval.unsigned_abs())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_minute_holds_more_than_the_budget() {
        for per_minute in [1, 2, 3, 10, 120, 200, 1000] {
            let (interval, tolerance) = shape(per_minute);
            // The most requests that conform in any minute: the first, and
            // one more per interval, the tolerance ahead.
            let most = 1 + (60_000_000 - 1 + tolerance) / interval;
            assert!(most <= i64::from(per_minute), "{per_minute}: {most}");
        }
        // The default 120: 12 at once, then one every 0.56 s.
        assert_eq!(shape(120), (555_555, 555_555 * 11));
    }
}

//! Two stores on one database, as two keysmith replicas open it, spend one
//! rate budget together: however their requests interleave, no more than
//! the budget is granted in a minute between them (each with a budget of
//! its own would grant it twice). Runs when `KEYSMITH_TEST_POSTGRES_URL`
//! names a server; without it the test says it was skipped and passes.
mod common;

use std::time::{Duration, Instant};

use common::open;
use keysmith_core::store::Store;
use keysmith_store_postgres::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_never_grant_more_than_the_budget_together() {
    let Some(db) = TestDatabase::create(
        "keysmith-store-postgres: tests/rate_budgets.rs",
        "cargo test -p keysmith-store-postgres --test rate_budgets",
    )
    .await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let budgets = [
        a.rate_budgets().expect("PostgreSQL shares budgets"),
        b.rate_budgets().expect("PostgreSQL shares budgets"),
    ];
    const PER_MINUTE: u32 = 10;
    let started = Instant::now();
    // Each asks for twice the budget at once, all of them concurrently.
    let mut asks = tokio::task::JoinSet::new();
    for budget in &budgets {
        for _ in 0..2 * PER_MINUTE {
            let budget = budget.clone();
            asks.spawn(async move { budget.take("3rpms", PER_MINUTE).await.unwrap() });
        }
    }
    let (mut granted, mut refused) = (0, 0);
    while let Some(answer) = asks.join_next().await {
        match answer.unwrap() {
            None => granted += 1,
            Some(wait) => {
                assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
                refused += 1;
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the asks took a minute: the count below says nothing"
    );
    assert!(granted >= 1, "the first ask is granted");
    assert!(
        granted <= PER_MINUTE,
        "{granted} granted in under a minute between the two, of {PER_MINUTE}"
    );
    assert_eq!(granted + refused, 4 * PER_MINUTE);

    // Another budget's name is another budget; and in it, what A took B
    // cannot take again: at 10 a minute one goes at once and the next
    // 6.7 s later, whichever store asks.
    let asked = Instant::now();
    assert_eq!(budgets[0].take("other", PER_MINUTE).await.unwrap(), None);
    let wait = budgets[1].take("other", PER_MINUTE).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "two asks took 6 s: the answer below says nothing"
    );
    let wait = wait.expect("B is refused the slot A took");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(6_667),
        "{wait:?}"
    );
}

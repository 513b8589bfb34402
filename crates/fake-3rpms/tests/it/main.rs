//! Every rule the fake honours, exercised over real HTTP on 127.0.0.1.
//! One test binary (modules below) keeps linking cheap.

mod api;
mod batch;
mod binary;
mod common;
mod documented;
mod rate_limit;
mod webhooks;

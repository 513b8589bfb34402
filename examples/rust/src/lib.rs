//! Rust clients of keysmith's gRPC API, as examples: `examples/issue_and_list.rs`
//! (the smallest client) and `examples/loadgen.rs` (the load generator).
//! Run them with `cargo run -p keysmith-examples --example <name>`.

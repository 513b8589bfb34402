//! Prints the fake's GraphQL schema: `cargo run -p fake-3rpms --example sdl`.
fn main() {
    print!("{}", fake_3rpms::sdl());
}

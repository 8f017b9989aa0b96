//! Async tour (filled in below).

fn main() {}

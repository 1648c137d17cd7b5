//! JWT verification cost per request (filled in below).

fn main() {}

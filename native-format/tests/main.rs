//! The wire format against its golden vectors (`tests/vectors/`), and the
//! fuzz target's body over every cut and flip of them.

mod format;
mod fuzz;

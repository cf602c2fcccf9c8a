//! The `focusforge` binary as a user runs it.

mod cli;

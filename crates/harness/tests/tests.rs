//! The harness against real `mariadbd` processes.
//!
//! Modules:
//! - `lifecycle`: start with chosen variables, restart on the same port, crash and start
//!   again, stop, clean-up on drop, several servers side by side.
//! - `faults`: each operation makes a real client's connection go away.

mod faults;
mod lifecycle;

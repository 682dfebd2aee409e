//! The harness against real `mariadbd` processes.
//!
//! Modules:
//! - `lifecycle`: start with chosen variables, restart on the same port, crash and start
//!   again, stop, clean-up on drop, several servers side by side.
//! - `faults`: each operation makes a real client's connection go away.
//! - `cluster`: a GTID replication set (a write replicated, lag, a broken SQL thread, the
//!   primary restarted and killed, promotions, a planned switchover and a
//!   semi-synchronous failover) and a three-node Galera cluster (formed, a
//!   write read on another node, a node killed and the survivors at size 2, rejoins by SST
//!   and by IST).

mod cluster;
mod faults;
mod lifecycle;

//! Integration tests for goneaway proxy: real MariaDB servers from the harness, real
//! clients (mysql_async and the `mariadb` command-line client), real faults.

// Shared setup: a server with a short wait_timeout and a proxy in front of it.
mod common;
// Login, queries, multi-results, prepared statements, wrong passwords.
mod basics;
// Sessions idle past wait_timeout, through KILL, restart and crash.
mod idle;
// Session state restored on a fresh backend; pinned sessions get a clear error.
mod state;
// Faults under a running command (relay resets): safe replay, outcome unknown, oversize.
mod faults;
// The real `mariadb` command-line client through the proxy.
mod cli;
// A Python application (PyMySQL) through the proxy, and the same one without it.
mod python;
// TLS towards clients: the `mariadb` client over TLS, require_tls refusing plain text.
mod tls;
// COM_CHANGE_USER, COM_RESET_CONNECTION, limits, graceful shutdown, a cut transaction.
mod lifecycle;
// sysbench and concurrent clients through KILLs, a restart and a crash.
mod under_load;
// The transaction contract with PyMySQL and the mariadb client: KILL, restart and crash,
// between statements and during one; the failed-transaction state.
mod transactions;
// The server's own accounts through the proxy: passwords, hosts, privileges, changes.
mod accounts;
// Transaction replay: lost transactions run again and checked; what is not replayed.
mod replay;
// Backends blackholed mid-statement: long statements waited for, lost requests and
// replies found by asking the server, and absorbed.
mod stalls;
// Shared server connections: many clients on few connections, state that moves, pins.
mod multiplex;
// The soak: seeded writers through KILLs, restarts, crashes and resets, checked by a ledger.
mod soak;
// In front of a cluster: a planned switchover and a failover of a real replication pair,
// two proxies in front of one pair through a switchover, a Galera writer killed, and a
// single read-only server's 1290 kept as it is.
mod cluster;

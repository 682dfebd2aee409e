//! `goneaway explain` on pasted text, files and standard input, in every format, and on bad input.

use std::process::Stdio;
use std::time::Duration;

use crate::util::{goneaway, run, run_measured, run_with_stdin, stderr, stdout};

const MIB: u64 = 1024 * 1024;

#[test]
fn explains_an_argument() {
    let output = run(&["explain", "ERROR 2006 (HY000): MySQL server has gone away"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("idle_timeout"), "{text}");
    assert!(text.contains("2006"), "{text}");
    assert!(text.contains("reconnect_then_retry"), "{text}");
}

#[test]
fn explains_a_whole_log_from_stdin_and_groups_repeats() {
    let log = "\
2024-05-01 10:00:01 ERROR app: pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')
2024-05-01 10:00:02 INFO app: request served
2024-05-01 10:05:01 ERROR app: pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')
2024-05-01 10:09:00 ERROR app: SQLSTATE[HY000] [1040] Too many connections
";
    let output = run_with_stdin(&["explain", "--format", "json"], log.as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{json:#}");
    assert_eq!(findings[0]["code"], 2013);
    assert_eq!(findings[0]["count"], 2);
    // 2013 mid-query: the server may have run it.
    assert_eq!(findings[0]["retry"], "retry_if_idempotent");
    assert_eq!(findings[1]["cause"], "too_many_connections");
    assert_eq!(json["lines_scanned"], 4);
}

#[test]
fn json_field_names_are_stable() {
    let output = run(&[
        "explain",
        "--format",
        "json",
        "ERROR 1153 (08S01): Got a packet bigger than 'max_allowed_packet' bytes",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let finding = &json["findings"][0];
    for field in [
        "cause",
        "title",
        "code",
        "sqlstate",
        "symbol",
        "retry",
        "count",
        "first_line",
        "lines",
        "example",
        "source",
        "diagnosis",
    ] {
        assert!(
            finding.get(field).is_some(),
            "missing {field} in {finding:#}"
        );
    }
    for field in [
        "causes",
        "retry",
        "explanation",
        "fixes",
        "tell_apart",
        "connection_lost",
    ] {
        assert!(
            finding["diagnosis"].get(field).is_some(),
            "missing diagnosis.{field}"
        );
    }
    assert_eq!(finding["cause"], "packet_too_large");
    assert_eq!(finding["retry"], "do_not_retry");
}

#[test]
fn markdown_is_ready_for_a_ticket() {
    let output = run(&[
        "explain",
        "--format",
        "markdown",
        "ERROR 2013 (HY000): Lost connection to MySQL server during query",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(text.starts_with('#'), "{text}");
    assert!(text.contains("2013"));
}

#[test]
fn reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("error.log");
    std::fs::write(
        &path,
        "2026-11-21 17:23:09 6 [Warning] Aborted connection 6 to db: 'goneaway' user: 'goneaway' host: '127.0.0.1' (Got timeout reading communication packets)\n",
    )
    .unwrap();
    let output = run(&["explain", "--file", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    // Honest about the ambiguity: idle timeout or net_read_timeout.
    assert!(
        text.contains("idle_timeout") && text.contains("net_timeout"),
        "{text}"
    );
}

#[test]
fn text_without_errors_exits_1() {
    let output = run_with_stdin(&["explain"], b"everything is fine\nreally\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no MySQL/MariaDB error recognised"));
}

#[test]
fn empty_input_is_a_clear_error() {
    let output = run_with_stdin(&["explain"], b"  \n\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("empty"), "{}", stderr(&output));
}

#[test]
fn binary_input_is_a_clear_error() {
    let output = run_with_stdin(&["explain"], b"\x7fELF\x02\x01\x01\x00\x00\x00garbage");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("binary"), "{}", stderr(&output));
}

#[test]
fn huge_input_is_refused_without_reading_it_all() {
    let huge = vec![b'x'; goneaway_core::MAX_INPUT_BYTES + 4096];
    let output = run_with_stdin(&["explain"], &huge);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("limit"), "{err}");
    // A pipe's size is unknown: not the bytes read (the limit plus one) as if it were.
    assert!(err.contains("more than 16777216 bytes"), "{err}");
    assert!(!err.contains("16777217"), "{err}");
}

/// A sparse 200 MiB file: the size without the disk.
fn sparse_file(dir: &tempfile::TempDir, len: u64) -> std::path::PathBuf {
    let path = dir.path().join("huge.log");
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

#[test]
fn huge_file_is_refused_with_its_real_size() {
    // The regression: "the input is 16777217 bytes" for a 200 MB file.
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(&dir, 200 * MIB);
    let mut by_name = goneaway();
    by_name
        .args(["explain", "--file"])
        .arg(&path)
        .stdin(Stdio::null());
    let mut redirected = goneaway();
    redirected
        .arg("explain")
        .stdin(std::fs::File::open(&path).unwrap());
    for command in [by_name, redirected] {
        let m = run_measured(command, Duration::from_secs(20), 512 * MIB);
        assert_eq!(m.killed, None);
        let err = stderr(&m.output);
        assert_eq!(m.output.status.code(), Some(2), "{err}");
        assert!(
            err.contains("the input is 209715200 bytes; the limit is 16777216 bytes"),
            "{err}"
        );
        // Refused from its size, without reading it.
        assert!(m.elapsed < Duration::from_secs(5), "{:?}", m.elapsed);
        assert!(m.peak_rss < 64 * MIB, "peak RSS {} bytes", m.peak_rss);
    }
}

#[test]
fn memory_stays_a_small_multiple_of_the_input() {
    // The regression: 447 MB of memory for 15 MB of error lines (every line's diagnosis
    // was kept until the end).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let line = "2024-05-01 10:00:01 ERROR app: pymysql.err.OperationalError: (2006, 'MySQL server has gone away')\n";
    let lines = 15_000_000 / line.len();
    let input = line.repeat(lines);
    std::fs::write(&path, &input).unwrap();
    for through_stdin in [false, true] {
        let mut command = goneaway();
        command.args(["explain", "--format", "json"]);
        if through_stdin {
            command.stdin(std::fs::File::open(&path).unwrap());
        } else {
            command.arg("--file").arg(&path).stdin(Stdio::null());
        }
        let m = run_measured(command, Duration::from_secs(120), 1024 * MIB);
        assert_eq!(m.killed, None);
        assert_eq!(m.output.status.code(), Some(0), "{}", stderr(&m.output));
        let json: serde_json::Value = serde_json::from_slice(&m.output.stdout).unwrap();
        assert_eq!(json["findings"][0]["count"], lines, "{json:#}");
        assert_eq!(json["lines_scanned"], lines);
        let bound = 8 * input.len() as u64 + 40 * MIB;
        assert!(
            m.peak_rss < bound,
            "peak RSS {} MB for {} MB of input (bound {} MB)",
            m.peak_rss / MIB,
            input.len() as u64 / MIB,
            bound / MIB
        );
    }
}

#[test]
fn non_ascii_lines_are_scanned_as_fast_as_ascii_ones() {
    // A Unicode word boundary made the classifier's regex set leave its DFA on every line
    // with a non-ASCII character: about 150 µs a line, 17 s for this input.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let line = "2024-05-01 10:00:01 ERROR app José: (2006, 'MySQL server has gone away')\n";
    let lines = 8 * MIB as usize / line.len();
    std::fs::write(&path, line.repeat(lines)).unwrap();
    let mut command = goneaway();
    command
        .args(["explain", "--format", "json", "--file"])
        .arg(&path)
        .stdin(Stdio::null());
    let m = run_measured(command, Duration::from_secs(60), 1024 * MIB);
    assert_eq!(m.killed, None);
    assert_eq!(m.output.status.code(), Some(0), "{}", stderr(&m.output));
    let json: serde_json::Value = serde_json::from_slice(&m.output.stdout).unwrap();
    assert_eq!(json["findings"][0]["count"], lines);
    assert!(m.elapsed < Duration::from_secs(6), "took {:?}", m.elapsed);
}

#[test]
fn missing_file_is_a_clear_error() {
    let output = run(&["explain", "--file", "/nonexistent/app.log"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/app.log"));
}

#[test]
fn passwords_in_pasted_urls_are_masked() {
    let output = run(&[
        "explain",
        "sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (2006, 'MySQL server has gone away') url=mysql+pymysql://app:s3cretpw@db:3306/app",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(!stdout(&output).contains("s3cretpw"), "{}", stdout(&output));
}

#[test]
fn a_client_received_1159_is_net_timeout_not_a_server_log() {
    // The mysql CLI's words for the server's error 1159: a transfer stalled past
    // net_read_timeout (the server sends no error packet for an idle close).
    let output = run(&[
        "explain",
        "--format",
        "json",
        "ERROR 1159 (08S01): Got timeout reading communication packets",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let finding = &json["findings"][0];
    assert_eq!(finding["cause"], "net_timeout", "{json:#}");
    assert_eq!(finding["code"], 1159);
    assert_eq!(finding["symbol"], "ER_NET_READ_INTERRUPTED");
    assert_eq!(finding["retry"], "retry_if_idempotent");
    assert_ne!(
        finding["source"], "MySQL/MariaDB server error log",
        "{json:#}"
    );
    assert_eq!(finding["diagnosis"]["causes"][0]["cause"], "net_timeout");
}

#[test]
fn the_same_words_in_a_server_log_keep_idle_timeout_first() {
    let log = "2024-05-01T10:00:00.123456Z 12 [Warning] Aborted connection 12 to db: 'shop' user: 'app' host: '10.0.0.7' (Got timeout reading communication packets)\n\
               2024-05-01 10:00:05 ERROR loader: java.sql.SQLException: Got timeout writing communication packets\n";
    let output = run_with_stdin(&["explain", "--format", "json"], log.as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{json:#}");
    assert_eq!(findings[0]["cause"], "idle_timeout");
    assert_eq!(findings[0]["source"], "MySQL/MariaDB server error log");
    let ranked: Vec<&str> = findings[0]["diagnosis"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cause"].as_str().unwrap())
        .collect();
    assert!(
        ranked.contains(&"net_timeout"),
        "still ambiguous: {ranked:?}"
    );
    // The driver's exception carrying 1161's words is the client side.
    assert_eq!(findings[1]["cause"], "net_timeout");
    assert_eq!(findings[1]["code"], 1161);
    assert_ne!(findings[1]["source"], "MySQL/MariaDB server error log");
}

#[test]
fn explains_the_drivers_of_more_ecosystems() {
    let log = "\
PrismaClientKnownRequestError: Server has closed the connection.
MySqlConnector.MySqlException (0x80004005): Connect Timeout expired. All pooled connections are in use.
com.mysql.cj.jdbc.exceptions.MySQLTimeoutException: Statement cancelled due to timeout or client request
java.sql.SQLNonTransientConnectionException: (conn=1234) Socket timout error
DBD::mysql::st execute failed: MySQL server has gone away at /app/lib/Job.pm line 42.
F, [2024-05-01T10:05:00.000000 #1] FATAL -- : ActiveRecord::ConnectionNotEstablished (MySQL client is not connected):
14:05:00.010 [error] ** (DBConnection.ConnectionError) connection not available and request was dropped from queue after 2000ms.
KnexTimeoutError: Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?
SequelizeConnectionRefusedError: connect ECONNREFUSED 127.0.0.1:3306
";
    let output = run_with_stdin(&["explain", "--format", "json"], log.as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let found: Vec<(String, String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["cause"].as_str().unwrap().to_string(),
                f["retry"].as_str().unwrap().to_string(),
                f["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("idle_timeout", "retry_if_idempotent", "Prisma"),
        (
            "too_many_connections",
            "safe_to_retry",
            "MySqlConnector (.NET)",
        ),
        ("query_timeout", "retry_if_idempotent", "MySQL Connector/J"),
        (
            "query_timeout",
            "retry_if_idempotent",
            "MariaDB Connector/J",
        ),
        (
            "idle_timeout",
            "reconnect_then_retry",
            "MySQL/MariaDB client library",
        ),
        (
            "idle_timeout",
            "reconnect_then_retry",
            "Ruby (mysql2 / Active Record)",
        ),
        (
            "too_many_connections",
            "safe_to_retry",
            "Elixir (DBConnection)",
        ),
        ("too_many_connections", "safe_to_retry", "Knex"),
        ("server_unreachable", "safe_to_retry", "Sequelize"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(c, r, s)| (c.to_string(), r.to_string(), s.to_string()))
        .collect();
    assert_eq!(found, expected, "{json:#}");
}

#[test]
fn a_pool_timeout_says_nothing_reached_the_server() {
    let output = run(&[
        "explain",
        "KnexTimeoutError: Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("[too_many_connections]"), "{text}");
    assert!(text.contains("(safe_to_retry)"), "{text}");
    assert!(text.contains("(Knex)"), "{text}");
    assert!(text.contains(".transacting(trx)"), "{text}");
}

//! Precedence between option files, URLs, the environment and flags.

use std::collections::HashMap;
use std::path::Path;

use goneaway_connect::{ConnectArgs, ConnectError};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write_cnf(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn home_my_cnf_is_read_when_nothing_else_is_given() {
    let home = tempfile::tempdir().unwrap();
    write_cnf(
        home.path(),
        ".my.cnf",
        "[mysql]\nuser=wrong\n[client]\nuser=monitor\npassword='se cret'\nhost=db1\nport=3310\n",
    );
    let home_str = home.path().to_str().unwrap();
    let t = ConnectArgs::default()
        .resolve_with(env(&[("HOME", home_str)]))
        .unwrap();
    assert_eq!(t.user.as_deref(), Some("monitor"));
    assert_eq!(t.password.as_ref().unwrap().expose(), "se cret");
    assert_eq!(t.redacted(), "mysql://monitor:****@db1:3310");
    assert!(t.source.defaults_file.is_some());
}

#[test]
fn flags_beat_url_beats_defaults_file() {
    let dir = tempfile::tempdir().unwrap();
    let cnf = write_cnf(
        dir.path(),
        "my.cnf",
        "[client]\nuser=cnfuser\npassword=cnfpw\nhost=cnfhost\ndatabase=cnfdb\n",
    );
    let args = ConnectArgs {
        url: Some("mysql://urluser@urlhost:3307".into()),
        port: Some(3399),
        defaults_file: Some(cnf),
        ..ConnectArgs::default()
    };
    let t = args.resolve_with(env(&[])).unwrap();
    assert_eq!(t.user.as_deref(), Some("urluser"));
    assert_eq!(t.host.as_deref(), Some("urlhost"));
    assert_eq!(t.port, Some(3399), "the flag wins over the URL");
    assert_eq!(
        t.database.as_deref(),
        Some("cnfdb"),
        "the file fills what the URL lacks"
    );
    assert_eq!(t.password.as_ref().unwrap().expose(), "cnfpw");
    assert!(t.source.flags);
}

#[test]
fn environment_urls_in_order_and_foreign_database_url_ignored() {
    let t = ConnectArgs::default()
        .resolve_with(env(&[
            ("MYSQL_URL", "mysql://a@h1"),
            ("DATABASE_URL", "mysql://b@h2"),
        ]))
        .unwrap();
    assert_eq!(t.user.as_deref(), Some("a"));
    assert_eq!(t.source.url_from, Some("MYSQL_URL"));
    let t = ConnectArgs::default()
        .resolve_with(env(&[("DATABASE_URL", "postgres://x@pg/db")]))
        .unwrap();
    assert_eq!(t.host, None, "a PostgreSQL DATABASE_URL is not ours");
    let t = ConnectArgs::default()
        .resolve_with(env(&[
            ("DATABASE_URL", "mysql://b:pw@h2"),
            ("MYSQL_PWD", "other"),
        ]))
        .unwrap();
    assert_eq!(
        t.password.as_ref().unwrap().expose(),
        "pw",
        "MYSQL_PWD only fills a gap"
    );
}

#[test]
fn home_my_cnf_is_not_mixed_into_a_url() {
    let home = tempfile::tempdir().unwrap();
    write_cnf(home.path(), ".my.cnf", "[client]\npassword=frommycnf\n");
    let args = ConnectArgs {
        url: Some("mysql://app@db".into()),
        ..ConnectArgs::default()
    };
    let t = args
        .resolve_with(env(&[("HOME", home.path().to_str().unwrap())]))
        .unwrap();
    assert!(t.password.is_none());
}

#[test]
fn missing_defaults_file_is_an_error_naming_the_file() {
    let args = ConnectArgs {
        defaults_file: Some("/nonexistent/goneaway.cnf".into()),
        ..ConnectArgs::default()
    };
    let err = args.resolve_with(env(&[])).unwrap_err();
    assert!(matches!(err, ConnectError::DefaultsFile { .. }));
    assert!(err.to_string().contains("/nonexistent/goneaway.cnf"));
}

#[test]
fn bad_url_does_not_echo_the_password() {
    let args = ConnectArgs::from_url("mysql://u:topsecret@h:notaport/db");
    let err = args.resolve_with(env(&[])).unwrap_err();
    assert!(!err.to_string().contains("topsecret"));
    let opts = ConnectArgs::from_url("mysql://u:topsecret@h:3306/db?prefer_socket=false")
        .resolve_with(env(&[]))
        .unwrap();
    assert!(!format!("{opts:?}").contains("topsecret"));
}

//! Running the `goneaway` binary built for these tests.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn goneaway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_goneaway"));
    command.env("NO_COLOR", "1").env_remove("RUST_LOG");
    command
}

/// Runs `goneaway ARGS` with `stdin` as standard input.
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = goneaway()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the goneaway binary runs");
    let mut input = child.stdin.take().unwrap();
    // The child may refuse a huge input before reading it all: a broken pipe is expected then.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs `goneaway ARGS` with no standard input.
pub fn run(args: &[&str]) -> Output {
    goneaway()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the goneaway binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole HTTP response (status line, headers, body) for `GET path` on `addr`
/// (`host:port`). `Connection: close` makes the server end the response with a close.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

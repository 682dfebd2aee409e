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

/// A run of the binary with its cost: wall time and peak resident memory.
pub struct Measured {
    pub output: Output,
    pub elapsed: std::time::Duration,
    /// Peak resident set size in bytes (the kernel's own figure, `ru_maxrss` from `wait4`).
    pub peak_rss: u64,
    /// Whether the run was killed for taking longer than its time limit or growing past its
    /// memory cap.
    pub killed: Option<String>,
}

/// Runs `command` (standard input already set by the caller) and measures it. It is killed
/// after `time_limit`, or as soon as its resident memory passes `memory_cap` bytes, so a
/// regression cannot take the machine with it; `peak_rss` is exact, from `wait4`, which
/// reaps this one child (`getrusage(RUSAGE_CHILDREN)` would mix in every child of this test
/// process, servers included).
// The child is reaped by `wait4`, which clippy does not see.
#[allow(clippy::zombie_processes)]
pub fn run_measured(
    mut command: Command,
    time_limit: std::time::Duration,
    memory_cap: u64,
) -> Measured {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the goneaway binary runs");
    let pid = child.id() as libc::pid_t;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut killed = None;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our unreaped child; status and usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if killed.is_none() {
            let rss = resident_bytes(pid);
            if started.elapsed() > time_limit {
                killed = Some(format!("still running after {time_limit:?}"));
            } else if rss > memory_cap {
                killed = Some(format!("resident memory {rss} bytes passed {memory_cap}"));
            }
            if killed.is_some() {
                // Not reaped yet, so the pid is still this child's.
                let _ = child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        elapsed,
        peak_rss: usage.ru_maxrss as u64 * 1024,
        killed,
    }
}

/// VmRSS of a running process, in bytes (0 once it is gone).
fn resident_bytes(pid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

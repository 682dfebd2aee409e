//! The fault grammar: what parses, what it displays as, and what the errors say.

use std::time::Duration;

use goneaway_relay::{Fault, FaultKind};

fn check(input: &str, expected: Fault, shown: &str) {
    let fault: Fault = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(fault, expected, "{input}");
    assert_eq!(fault.to_string(), shown, "{input}");
    assert_eq!(
        shown.parse::<Fault>().expect(shown),
        fault,
        "display must parse back"
    );
}

fn check_error(input: &str, expected_in_message: &str) {
    let error = input.parse::<Fault>().expect_err(input);
    assert!(error.is_parse());
    let message = error.to_string();
    assert!(
        message.contains(expected_in_message),
        "{input:?}: {message:?} should contain {expected_in_message:?}"
    );
}

#[test]
fn faults_parse_and_display() {
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    check(
        "blackhole-idle 10s",
        Fault::BlackholeIdle(s(10)),
        "blackhole-idle 10s",
    );
    check(
        "blackhole-idle 1500ms",
        Fault::BlackholeIdle(ms(1500)),
        "blackhole-idle 1500ms",
    );
    check(
        "Blackhole-Idle  2m",
        Fault::BlackholeIdle(s(120)),
        "blackhole-idle 2m",
    );
    check(
        "reset-after 4096",
        Fault::ResetAfterBytes(4096),
        "reset-after 4096",
    );
    check("reset-after 0", Fault::ResetAfterBytes(0), "reset-after 0");
    check("latency 50ms", Fault::Latency(ms(50)), "latency 50ms");
    check("latency 1000ms", Fault::Latency(s(1)), "latency 1s");
    check("refuse", Fault::RefuseNew, "refuse");
    check("refuse-new", Fault::RefuseNew, "refuse");
    check("blackhole-new", Fault::BlackholeNew, "blackhole-new");
    check("4031-idle 5s", Fault::Inject4031Idle(s(5)), "4031-idle 5s");
    check(
        "4031-idle 1h",
        Fault::Inject4031Idle(s(3600)),
        "4031-idle 1h",
    );
    check(
        "latency 250us",
        Fault::Latency(Duration::from_micros(250)),
        "latency 250us",
    );
}

#[test]
fn parse_errors_say_what_is_wrong() {
    check_error("", "no fault given");
    check_error("explode", "unknown fault `explode`");
    check_error("explode", "blackhole-idle <duration>");
    check_error(
        "blackhole-idle",
        "`blackhole-idle` needs a duration, e.g. `blackhole-idle 10s`",
    );
    check_error("reset-after", "needs a byte count");
    check_error("blackhole-idle 10", "a unit is needed");
    check_error("blackhole-idle 1.5s", "fractions are not supported");
    check_error("latency 5 parsecs", "unexpected `parsecs`");
    check_error("latency 5fortnights", "unknown unit `fortnights`");
    check_error("latency ms", "expected a whole number and a unit");
    check_error("latency -5s", "expected a whole number and a unit");
    check_error("latency 99999999999999999999s", "too large");
    check_error("4031-idle 9999999999999999999h", "too large");
    check_error("reset-after 4k", "expected a whole number of bytes");
    check_error("reset-after -1", "expected a whole number of bytes");
    check_error("reset-after 99999999999999999999", "too large");
    check_error("refuse now", "`refuse` takes no argument");
}

#[test]
fn kinds_parse_by_name() {
    for kind in FaultKind::ALL {
        let name = kind.name();
        assert_eq!(name.parse::<FaultKind>().expect(name), kind);
    }
    let error = "latencies".parse::<FaultKind>().expect_err("unknown");
    assert!(
        error.to_string().contains("unknown fault `latencies`"),
        "{error}"
    );
}

#[test]
fn arbitrary_input_never_panics() {
    // Every prefix of a few nasty strings, through both parsers.
    let nasty = [
        "blackhole-idle 18446744073709551615h",
        "latency \u{1F4A5}s",
        "reset-after \0\0\0",
        "4031-idle µs",
        "set set set set",
    ];
    for text in nasty {
        for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
            let _ = text[..end].parse::<Fault>();
            let _ = text[..end].parse::<goneaway_relay::control::Command>();
        }
    }
}

//! `goneaway demo` end to end, on the throwaway server it starts itself.

use crate::util::{run, stderr, stdout};

#[test]
fn demo_shows_the_real_error_and_its_explanation() {
    let output = run(&["demo", "--wait-timeout", "1"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}\n{}", stderr(&output));
    // The real client error from the real mariadb client, and its explanation.
    assert!(text.contains("ERROR 2006 (HY000)"), "{text}");
    assert!(text.contains("idle_timeout"), "{text}");
    assert!(
        text.contains("Got timeout reading communication packets"),
        "{text}"
    );
    // The library and the proxy carry the same idle work through without an error.
    assert!(
        text.contains("No caller saw \"MySQL server has gone away\""),
        "{text}"
    );
    assert!(text.contains("errors the client saw: 0"), "{text}");
    // A planned switchover under a client writing through the proxy: the writer moved, the
    // client saw no error, and every row it was told was written is on the new primary.
    let switchover = text
        .split("a switchover under a running client")
        .nth(1)
        .expect("the switchover step");
    assert!(
        switchover.contains("  the writer moved: 127.0.0.1:"),
        "{switchover}"
    );
    assert!(
        switchover.contains(" and saw 0 errors across the switchover"),
        "{switchover}"
    );
    assert!(
        switchover.contains("  longest statement wait: "),
        "{switchover}"
    );
    assert!(
        switchover.contains("  every acknowledged row is on the new primary: "),
        "{switchover}"
    );
    // The doctor's report on the throwaway server puts the idle timeout first.
    let verdict = text.split("Verdict").nth(1).expect("the doctor's verdict");
    assert!(
        verdict
            .trim_start()
            .starts_with("1. idle connection closed by the server"),
        "{verdict}"
    );
    // The password is never printed.
    assert!(!text.contains(goneaway_harness::APP_PASSWORD), "{text}");
}

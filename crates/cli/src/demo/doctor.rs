//! Step: the doctor examines the demo's server and names the cause the tour provoked.

use std::time::Duration;

use goneaway_harness::Server;

/// Runs `goneaway doctor` on the demo server — after the earlier steps let connections idle
/// past `wait_timeout`, so Aborted_clients and "Got timeout reading communication packets"
/// in the error log are there as evidence — and prints its report.
pub async fn run(server: &Server) -> anyhow::Result<()> {
    println!(
        "$ goneaway doctor --url {} --error-log {}",
        server.url_redacted(),
        server.error_log().display()
    );
    let target = goneaway_connect::Target::from_url(&server.url())?;
    let error_log =
        goneaway_doctor::read_log(&goneaway_doctor::LogSource::File(server.error_log()))?;
    let options = goneaway_doctor::Options {
        sample: Duration::from_secs(1),
        error_log: Some(error_log),
        progress: crate::cmd::doctor::progress(),
        ..goneaway_doctor::Options::default()
    };
    let report = goneaway_doctor::diagnose(&target, &options).await;
    print!("{}", report.render_text(crate::output::use_color()));
    Ok(())
}

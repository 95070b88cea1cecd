//! Renders the complete fixture runs (classification and regression) and statistics job to
//! HTML and Markdown files (for the screenshot in
//! `docs/` and manual checks): `cargo run -p swarm-report --example render_fixture -- DIR`.
fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    let options = swarm_report::RenderOptions::from_env();
    let run = swarm_report::fixtures::complete_run(5, 8, 180);
    let report = swarm_report::render::run_report(&run, &options)?;
    std::fs::write(dir.join("run.html"), &report.html)?;
    std::fs::write(dir.join("run.md"), &report.markdown)?;
    let regression = swarm_report::fixtures::regression_run(5, 120);
    let report = swarm_report::render::run_report(&regression, &options)?;
    std::fs::write(dir.join("regression.html"), &report.html)?;
    std::fs::write(dir.join("regression.md"), &report.markdown)?;
    let stats =
        swarm_report::render::stats::report(&swarm_report::fixtures::complete_stats(), &options)?;
    std::fs::write(dir.join("stats.html"), &stats.html)?;
    std::fs::write(dir.join("stats.md"), &stats.markdown)?;
    println!("{}", dir.join("run.html").display());
    Ok(())
}

//! Reports, end to end against a real database: the report worker's handler renders runs and
//! statistics jobs stored the way the train worker stores them; the pages are valid HTML that
//! loads nothing and opens in headless Chromium without a console error; the `swarm report`
//! commands read them; the `swarm_analyst` role reads the report views and `reports` and
//! nothing else; every regression model's run is reported end to end ([`regression`]); a multiclass linear
//! model's coefficients are shown per class ([`weights`]).

mod helpers;
mod regression;
mod weights;

use helpers::*;
use swarm_report::{fixtures, RenderOptions, ReportHandler};
use swarm_runtime::process::Outcome;
use uuid::Uuid;

/// Every chart a complete binary-classification run with a grid and a permutation test shows.
const RUN_CHARTS: &[&str] = &[
    "folds",
    "confusion",
    "roc",
    "sites",
    "grid",
    "permutation",
    "features",
];

/// The JSON of a run report holds `predictions` out-of-fold predictions, `candidates` grid
/// candidates and `permutations` permutation scores.
#[track_caller]
fn assert_result_sizes(
    json: &serde_json::Value,
    predictions: usize,
    candidates: usize,
    permutations: usize,
) {
    let len = |array: &serde_json::Value| array.as_array().unwrap().len();
    assert_eq!(len(&json["predictions"]), predictions, "predictions");
    assert_eq!(
        len(&json["results"]["grid"]["candidates"]),
        candidates,
        "grid candidates"
    );
    assert_eq!(
        len(&json["results"]["permutation"]["scores"]),
        permutations,
        "permutation scores"
    );
}

#[tokio::test]
async fn a_complete_run_renders_every_section_as_valid_self_contained_html() {
    let db = TestDb::new().await;
    let run = fixtures::complete_run(5, 8, 120);
    insert_run(&db, &run).await;

    renders(&db, &ReportHandler::default(), run.run_id).await;
    let (kind, summary, markdown, html, json) = stored(&db, run.run_id).await;
    assert_eq!(kind, "run");

    // Every section, every chart, once.
    for section in [
        "data",
        "model",
        "validation",
        "metrics",
        "folds",
        "confusion",
        "roc",
        "sites",
        "grid",
        "permutation",
        "predictions",
        "features",
        "lineage",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{section}\">")),
            "no {section} section"
        );
    }
    let document = scraper::Html::parse_document(&html);
    for chart in RUN_CHARTS {
        let selector =
            scraper::Selector::parse(&format!("svg.chart[data-chart=\"{chart}\"]")).unwrap();
        let found: Vec<_> = document.select(&selector).collect();
        assert_eq!(found.len(), 1, "the {chart} chart");
        let svg = found[0];
        assert!(
            svg.descendants().count() > 10,
            "the {chart} chart draws something"
        );
        let title = scraper::Selector::parse("title").unwrap();
        assert!(
            svg.select(&title).next().is_some(),
            "the {chart} chart has a title"
        );
    }
    // The region labels name the connectivity features.
    assert!(html.contains(" × R-"), "region pairs in the top features");
    // The CSV download holds every prediction.
    let link = scraper::Selector::parse("a.download[download]").unwrap();
    let href = document
        .select(&link)
        .next()
        .expect("a CSV link")
        .value()
        .attr("href")
        .unwrap();
    let encoded = href
        .strip_prefix("data:text/csv;charset=utf-8;base64,")
        .expect("a base64 CSV");
    let csv = base64_decode(encoded);
    assert_eq!(csv.lines().count(), 1 + run.predictions.len());
    assert!(csv.starts_with("repeat,site,subject,fold,y_true,y_pred,score,correct\n"));

    // Valid HTML: no parse error, no unclosed or misnested element.
    assert_valid_html(&html);
    // Nothing external: no URL at all without a Jaeger UI configured.
    assert_self_contained(&html, &[]);
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));

    // Markdown and JSON carry the same content.
    assert!(summary.contains("adni-connectivity"));
    for heading in [
        "## Data",
        "## Folds",
        "## ROC curve",
        "## Scores per site",
        "## Grid search",
        "## Permutation test",
        "## Out-of-fold predictions",
        "## Top features",
        "## Lineage",
    ] {
        assert!(markdown.contains(heading), "the Markdown lacks {heading}");
    }
    assert_result_sizes(&json, 120, 12, 1000);

    // The view reads it.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT main_metric, main_score, roc_auc, permutation_p, reported_at IS NOT NULL
             FROM report_summary WHERE run_id = $1",
            &[&run.run_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "balanced_accuracy");
    assert!((row.get::<_, f64>(1) - run.metrics["balanced_accuracy"].mean).abs() < 1e-12);
    assert!(row.get::<_, Option<f64>>(2).is_some());
    assert!(row.get::<_, Option<f64>>(3).is_some());
    assert!(row.get::<_, bool>(4));
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM run_metrics WHERE run_id = $1 AND fold IS NOT NULL",
            &[&run.run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5 * 8);
    drop(client);
    db.finish().await;
}

#[tokio::test]
async fn the_trace_id_links_to_jaeger_and_to_nothing_else() {
    let db = TestDb::new().await;
    let run = fixtures::complete_run(3, 4, 30);
    insert_run(&db, &run).await;
    let handler = ReportHandler::new(RenderOptions {
        jaeger_ui_url: Some("http://localhost:16686".to_owned()),
    });
    renders(&db, &handler, run.run_id).await;
    let (_, _, markdown, html, json) = stored(&db, run.run_id).await;
    let trace = "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736";
    assert_self_contained(&html, &[trace]);
    assert_eq!(external_urls(&html, &[]).len(), 1, "the trace link");
    assert!(markdown.contains(trace));
    assert_eq!(json["trace_url"], trace);
    db.finish().await;
}

#[tokio::test]
async fn a_statistics_job_gets_its_own_report() {
    let db = TestDb::new().await;
    let stats = fixtures::complete_stats();
    insert_stats(&db, &stats).await;
    renders(&db, &ReportHandler::default(), stats.id).await;
    let (kind, summary, markdown, html, json) = stored(&db, stats.id).await;
    assert_eq!(kind, "stats");
    // The stored summary is plain text: terminals print it as it is.
    assert!(
        summary.contains(": 9 of 45 features significant") && !summary.contains("**"),
        "{summary}"
    );
    let document = scraper::Html::parse_document(&html);
    let volcano = scraper::Selector::parse("svg.chart[data-chart=\"volcano\"]").unwrap();
    assert_eq!(document.select(&volcano).count(), 1);
    let rows = scraper::Selector::parse("#significant tbody tr").unwrap();
    assert_eq!(
        document.select(&rows).count(),
        9,
        "one row per significant feature"
    );
    assert!(html.contains("L-Hippocampus × R-Hippocampus"));
    assert_valid_html(&html);
    assert_self_contained(&html, &[]);
    assert!(markdown.contains("## Significant features"));
    assert_eq!(json["kind"], "stats");
    // A stats report is not a run: the run view does not list it.
    assert_eq!(db.count("SELECT count(*) FROM report_summary").await, 0);
    db.finish().await;
}

#[tokio::test]
async fn an_unknown_id_is_a_permanent_error_and_a_rerender_replaces_the_report() {
    let db = TestDb::new().await;
    let missing = Uuid::now_v7();
    match handle(&db, &ReportHandler::default(), missing).await {
        Outcome::DeadLettered(reason) => {
            assert!(reason.contains(&missing.to_string()), "{reason}");
            assert!(reason.contains("stats_jobs"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    let run = fixtures::complete_run(3, 2, 12);
    insert_run(&db, &run).await;
    for _ in 0..2 {
        renders(&db, &ReportHandler::default(), run.run_id).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM reports").await, 1);
    db.finish().await;
}

/// The page opens in headless Chromium: no console message (a CSP violation, a failed load or a
/// script error would each log one), and the DOM it built has every chart.
#[test]
fn the_page_opens_in_headless_chromium_without_console_errors() {
    let Some(chromium) = chromium() else {
        panic!(
            "chromium is not installed: `apt-get install -y chromium` (.ci/run does), or set CHROMIUM"
        );
    };
    let dir = std::env::temp_dir().join(format!("swarm-report-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = RenderOptions {
        jaeger_ui_url: Some("http://localhost:16686".to_owned()),
    };
    let run =
        swarm_report::render::run_report(&fixtures::complete_run(10, 12, 600), &options).unwrap();
    let stats = swarm_report::render::stats::report(&fixtures::complete_stats(), &options).unwrap();
    for (name, html, charts) in [
        ("run.html", &run.html, RUN_CHARTS),
        ("stats.html", &stats.html, &["volcano"][..]),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, html).unwrap();
        let loaded = load_in_chromium(&chromium, &path, &[]);
        assert!(
            loaded.console.is_empty(),
            "{name}: console messages: {:#?}",
            loaded.console
        );
        assert!(
            loaded.dom.contains("</html>"),
            "{name}: no DOM dumped; stderr:\n{}",
            loaded.stderr
        );
        for chart in charts {
            assert!(
                loaded.dom.contains(&format!("data-chart=\"{chart}\"")),
                "{name}: the {chart} chart is not in the DOM"
            );
        }
    }
    // The check can fail: a page that breaks its own CSP is reported.
    let bad = dir.join("bad.html");
    std::fs::write(
        &bad,
        run.html.replace(
            "</main>",
            "<img src=\"https://example.invalid/x.png\"><script>nope(</script></main>",
        ),
    )
    .unwrap();
    let loaded = load_in_chromium(&chromium, &bad, &[]);
    assert!(
        !loaded.console.is_empty(),
        "a CSP violation is seen:\n{}",
        loaded.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_cli_lists_shows_and_opens_reports() {
    let db = TestDb::new().await;
    let run = fixtures::complete_run(5, 4, 30);
    insert_run(&db, &run).await;
    let stats = fixtures::complete_stats();
    insert_stats(&db, &stats).await;
    for id in [run.run_id, stats.id] {
        renders(&db, &ReportHandler::default(), id).await;
    }
    let swarm = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env_remove("JAEGER_UI_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swarm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = swarm(&["report", "list"]);
    let mut lines = list.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["run", "project", "model", "scheme", "main score", "date"]
    );
    assert!(list.contains(&run.run_id.to_string()), "{list}");
    assert!(list.contains("stratified_k_fold"), "{list}");
    assert!(list.contains("balanced_accuracy 0."), "{list}");
    assert!(list.contains(&stats.id.to_string()), "{list}");
    assert!(list.contains("9 of 45 significant"), "{list}");
    let other = swarm(&["report", "list", "--project", "nope"]);
    assert_eq!(other.lines().count(), 1, "{other}");

    let md = swarm(&["report", "show", &run.run_id.to_string(), "--format", "md"]);
    assert!(md.starts_with(&format!("# Report for run {}", run.run_id)));
    assert!(md.contains("model **logistic**"));
    // Without --format: plain text for the terminal, no Markdown emphasis or escapes.
    let text = swarm(&["report", "show", &run.run_id.to_string()]);
    assert!(text.contains("model logistic (C=1.0)"), "{text}");
    assert!(!text.contains("**") && !text.contains(r"\_"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&swarm(&[
        "report",
        "show",
        &run.run_id.to_string(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["run_id"], run.run_id.to_string());

    let dir = std::env::temp_dir().join(format!("swarm-open-{}", Uuid::new_v4().simple()));
    let target = dir.join("r.html");
    // `--out` writes into an existing directory; it does not create one.
    std::fs::create_dir_all(&dir).unwrap();
    let printed = swarm(&[
        "report",
        "open",
        &stats.id.to_string(),
        "--out",
        target.to_str().unwrap(),
    ]);
    let path = std::path::PathBuf::from(printed.trim());
    assert!(path.ends_with("r.html"), "{printed}");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("data-chart=\"volcano\""));
    let default = swarm(&["report", "open", &run.run_id.to_string()]);
    let default = std::path::PathBuf::from(default.trim());
    assert!(std::fs::read_to_string(&default)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
    std::fs::remove_dir_all(&dir).unwrap();
    db.finish().await;
}

/// `deploy/postgres/analyst.sql`: the role reads the two views and `reports`, and nothing else.
#[tokio::test]
async fn the_analyst_role_reads_the_report_views_and_nothing_else() {
    let db = TestDb::new().await;
    let run = fixtures::complete_run(3, 2, 12);
    insert_run(&db, &run).await;
    renders(&db, &ReportHandler::default(), run.run_id).await;

    let sql = include_str!("../../deploy/postgres/analyst.sql");
    let client = db.client().await;
    // Twice: it is idempotent.
    client
        .batch_execute(sql)
        .await
        .expect("analyst.sql applies");
    client
        .batch_execute(sql)
        .await
        .expect("analyst.sql applies again");

    client
        .batch_execute("SET ROLE swarm_analyst")
        .await
        .unwrap();
    for (sql, want) in [
        ("SELECT count(*) FROM report_summary", 1i64),
        (
            "SELECT count(*) FROM run_metrics WHERE fold IS NOT NULL",
            3 * 2,
        ),
        (
            "SELECT count(*) FROM reports WHERE html LIKE '<!DOCTYPE html>%'",
            1,
        ),
    ] {
        let n: i64 = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        assert_eq!(n, want, "{sql}");
    }
    let denied = |e: &tokio_postgres::Error| {
        e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    };
    for table in [
        "samples",
        "features",
        "runs",
        "folds",
        "predictions",
        "projects",
        "stats_jobs",
        "processed_messages",
        "outbox",
        "dead_letters",
        "schema_migrations",
    ] {
        let e = client
            .query(&format!("SELECT * FROM {table} LIMIT 1"), &[])
            .await
            .expect_err(&format!("the analyst must not read {table}"));
        assert!(denied(&e), "{table}: {e}");
    }
    for write in [
        "INSERT INTO reports (run_id, summary, markdown, html, json, message_id) VALUES (gen_random_uuid(), '', '', '', '{}', 'x')",
        "UPDATE reports SET summary = 'x'",
        "DELETE FROM reports",
        "TRUNCATE reports",
        "UPDATE samples SET label = 'x'",
        "DELETE FROM runs",
        "CREATE TABLE public.mine (a int)",
        "CREATE SCHEMA mine",
        "CREATE VIEW public.v AS SELECT 1",
    ] {
        let e = client
            .batch_execute(write)
            .await
            .expect_err(&format!("the analyst must not run {write}"));
        assert!(denied(&e), "{write}: {e}");
    }
    client.batch_execute("RESET ROLE").await.unwrap();

    // The example queries of docs/analyst-sql.md run as the analyst and each finds rows.
    let stats = fixtures::complete_stats();
    insert_stats(&db, &stats).await;
    renders(&db, &ReportHandler::default(), stats.id).await;
    client
        .batch_execute("SET ROLE swarm_analyst")
        .await
        .unwrap();
    let examples = analyst_sql_examples();
    assert!(examples.len() >= 6, "{examples:?}");
    for sql in &examples {
        let rows = client
            .query(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("docs/analyst-sql.md example fails: {e}\n{sql}"));
        assert!(
            !rows.is_empty(),
            "docs/analyst-sql.md example finds nothing:\n{sql}"
        );
    }
    client.batch_execute("RESET ROLE").await.unwrap();

    // And in the catalog: SELECT on exactly the three relations, no write privilege anywhere.
    let rows = client
        .query(
            "SELECT c.relname,
                    has_table_privilege('swarm_analyst', c.oid, 'SELECT'),
                    has_table_privilege('swarm_analyst', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
             ORDER BY c.relname",
            &[],
        )
        .await
        .unwrap();
    let readable: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    assert_eq!(readable, ["report_summary", "reports", "run_metrics"]);
    let writable: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| r.get(0))
        .collect();
    assert!(writable.is_empty(), "writable: {writable:?}");
    let (can_login, creates): (bool, bool) = {
        let r = client
            .query_one(
                "SELECT rolcanlogin, rolcreatedb OR rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = 'swarm_analyst'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(!can_login && !creates);
    drop(client);
    db.finish().await;
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// The HTML checks find what they look for.
#[test]
fn the_html_checks_can_fail() {
    let good = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>t</title>\
                <style>a > b { color: red }</style></head><body><p>x</p>\
                <svg viewBox=\"0 0 1 1\"><title>c</title><rect x=\"0\"/><text>t</text></svg>\
                <a href=\"#x\">in</a></body></html>";
    assert_eq!(html_problems(good), Vec::<String>::new());
    assert_eq!(external_urls(good, &[]), Vec::<String>::new());
    for (bad, what) in [
        (good.replace("<p>x</p>", "<p>x"), "unclosed p"),
        (
            good.replace("<p>x</p>", "<div><span></div></span>"),
            "misnested",
        ),
        (good.replace("</body></html>", ""), "unclosed body"),
        (
            good.replace("<p>x</p>", "<p x=\"1\" x=\"2\">x</p>"),
            "duplicate attribute",
        ),
        (good.replace("<p>x</p>", "<div/>"), "self-closing div"),
    ] {
        assert!(!html_problems(&bad).is_empty(), "{what} is not found");
    }
    for (bad, what) in [
        (
            good.replace("<p>x</p>", "<img src=\"https://x.org/a.png\">"),
            "an image",
        ),
        (
            good.replace("#x", "//cdn.x.org/a.css"),
            "a protocol-relative link",
        ),
        (
            good.replace("color: red", "background: url(x.png)"),
            "a CSS url()",
        ),
        (
            good.replace("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" "),
            "a namespace URL",
        ),
    ] {
        assert!(!external_urls(&bad, &[]).is_empty(), "{what} is not found");
    }
}

/// The statements of the first `sql` block in docs/analyst-sql.md.
fn analyst_sql_examples() -> Vec<String> {
    let section = include_str!("../../docs/analyst-sql.md");
    let start = section.find("```sql").expect("an sql block") + "```sql".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    block
        .split(";\n")
        .map(|statement| {
            statement
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// The real pipeline (ingest → features → train with a grid and a permutation test → report,
/// through the broker) stores what the report renders: every chart is there, the page is valid
/// and loads nothing, and the connectivity features carry the project's region labels.
#[tokio::test]
async fn a_report_of_the_real_pipeline_has_every_chart() {
    use broker_schemas::{IngestV1, TrainOptions, TrainRequest, TrainV1};

    let db = TestDb::new().await;
    let world = Broker::new(&db).await;
    let workers = swarm::commands::demo::spawn_workers(&world.settings);

    let regions = 8;
    let sites = ["lab-a", "lab-b"];
    let data = swarm::synth::timeseries_dataset(&sites, 24, 60, regions, 11);
    for site in sites {
        let samples = data
            .iter()
            .filter(|(s, _)| s == site)
            .map(|(_, sample)| sample.clone())
            .collect();
        let batch = IngestV1 {
            project: "rest".to_owned(),
            site: site.to_owned(),
            samples,
        };
        world.send(&batch, "ingest-job").await;
    }
    wait_for(&db, "SELECT count(*) FROM features", 48).await;
    let labels: Vec<String> = (0..regions).map(|r| format!("ROI-{r}")).collect();
    db.client()
        .await
        .execute(
            "UPDATE projects SET region_labels = $1 WHERE name = 'rest'",
            &[&labels],
        )
        .await
        .unwrap();

    let run_id = Uuid::now_v7();
    let mut options = TrainOptions::default();
    options.grid.insert(
        "C".to_owned(),
        vec!["0.1".to_owned(), "1".to_owned(), "10".to_owned()],
    );
    options.permutations = 30;
    let request = TrainRequest {
        train: TrainV1 {
            run_id,
            project: "rest".to_owned(),
            model: "logistic".to_owned(),
            params: Default::default(),
            cv: Default::default(),
            sites: Vec::new(),
        },
        options,
    };
    world.send(&request, "train-job").await;
    let stats_id = Uuid::now_v7();
    let stats_job = broker_schemas::StatsV1 {
        job_id: stats_id,
        project: "rest".to_owned(),
        test: broker_schemas::StatsTest::WelchT,
        covariate: None,
        groups: Vec::new(),
        sites: Vec::new(),
        alpha: 0.05,
    };
    world.send(&stats_job, "stats-job").await;
    wait_for(
        &db,
        &format!("SELECT count(*) FROM reports WHERE run_id IN ('{run_id}', '{stats_id}')"),
        2,
    )
    .await;
    for worker in workers {
        worker.stop().await.expect("the worker stops cleanly");
    }
    world.finish().await;

    let (kind, _, markdown, html, json) = stored(&db, run_id).await;
    assert_eq!(kind, "run");
    let document = scraper::Html::parse_document(&html);
    for chart in RUN_CHARTS {
        let selector =
            scraper::Selector::parse(&format!("svg.chart[data-chart=\"{chart}\"]")).unwrap();
        assert_eq!(
            document.select(&selector).count(),
            1,
            "the {chart} chart of the real run"
        );
    }
    assert_valid_html(&html);
    let trace_link: Vec<String> = json["trace_url"]
        .as_str()
        .map(str::to_owned)
        .into_iter()
        .collect();
    let allowed: Vec<&str> = trace_link.iter().map(String::as_str).collect();
    assert_self_contained(&html, &allowed);
    assert!(
        html.contains("ROI-0 × ROI-1") || html.contains(" × ROI-"),
        "region pairs"
    );
    assert_result_sizes(&json, 48, 3, 30);
    assert!(markdown.contains("## Permutation test"));

    // The statistics job: its own report, with the volcano plot and region-pair names.
    let (kind, summary, _, html, json) = stored(&db, stats_id).await;
    assert_eq!(kind, "stats");
    assert!(summary.contains("features significant"), "{summary}");
    assert!(html.contains("data-chart=\"volcano\""));
    assert_valid_html(&html);
    assert_eq!(json["results"]["features"].as_array().unwrap().len(), 28);
    assert!(json["results"]["features"][0]["name"].is_string());
    assert!(
        json["significant"].as_array().unwrap().is_empty()
            || json["significant"][0]["name"]
                .as_str()
                .unwrap()
                .contains(" × ROI-"),
        "{}",
        json["significant"]
    );
    db.finish().await;
}

//! Test helpers: a fresh database per test, rows written the way the train (and stats) worker
//! writes them, the report handler run against it, and the checks a report page must pass (an
//! HTML5 tokenizer and tree builder, no URL, headless Chromium).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use serde_json::json;
use swarm_report::{RunData, StatsData};
use swarm_runtime::db::Pool;
use swarm_runtime::process::Outcome;
use swarm_runtime::MessageMeta;
use uuid::Uuid;

#[path = "../common/mod.rs"]
mod common;

use common::database_server;
pub use common::PATIENCE;

/// One test's database, dropped by [`TestDb::finish`].
pub struct TestDb {
    pub pool: Pool,
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        swarm_runtime::telemetry::init_for_tests();
        let name = format!("swarm_test_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let url = format!("{}/{name}", database_server());
        let pool = swarm_runtime::db::connect_and_migrate(&url, 4)
            .await
            .expect("Postgres is reachable (run .ci/run or start it)");
        Self { pool, url, name }
    }

    /// A client of the test database.
    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool.get().await.unwrap()
    }

    /// The value of a count query without parameters.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn finish(self) {
        self.pool.close();
        common::drop_database(&self.name).await;
    }
}

/// The project of a run or statistics job, with its region labels (kept if it is there).
async fn insert_project(
    client: &deadpool_postgres::Object,
    project: &str,
    region_labels: &[String],
) {
    client
        .execute(
            "INSERT INTO projects (name, kind, dimension, region_labels) VALUES ($1, 'timeseries', $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&project, &(region_labels.len().max(1) as i32), &region_labels],
        )
        .await
        .unwrap();
}

/// Writes a run as the train worker does: the project (with region labels), `runs`, `folds`
/// and `predictions` rows.
pub async fn insert_run(db: &TestDb, run: &RunData) {
    let client = db.client().await;
    insert_project(&client, &run.project, &run.region_labels).await;
    let metrics = serde_json::to_value(&run.metrics).unwrap();
    let results = serde_json::to_value(&run.results).unwrap();
    client
        .execute(
            "INSERT INTO runs (id, project, model, params, cv, sites, n_samples, n_features, classes,
                               data_summary, metrics, results, model_format, model_blob, duration_ms,
                               job_id, message_id, trace_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'test', '\\x00', $13, $14, 'm-1', $15, $16)",
            &[
                &run.run_id,
                &run.project,
                &run.model,
                &serde_json::to_value(&run.params).unwrap(),
                &serde_json::to_value(&run.cv).unwrap(),
                &run.sites,
                &(run.n_samples as i32),
                &(run.n_features as i32),
                &run.classes,
                &serde_json::to_value(&run.data_summary).unwrap(),
                &metrics,
                &results,
                &run.duration_ms,
                &run.job_id,
                &run.trace_id,
                &run.created_at,
            ],
        )
        .await
        .unwrap();
    for f in &run.folds {
        client
            .execute(
                "INSERT INTO folds (run_id, fold, n_train, n_test, accuracy, balanced_accuracy, confusion, metrics)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &run.run_id,
                    &(f.fold as i32),
                    &(f.n_train as i32),
                    &(f.n_test as i32),
                    &f.accuracy,
                    &f.balanced_accuracy,
                    &json!(f.confusion),
                    &serde_json::to_value(&f.metrics).unwrap(),
                ],
            )
            .await
            .unwrap();
    }
    // One statement for all predictions: unnest the columns.
    let p = &run.predictions;
    let repeat: Vec<i32> = p.iter().map(|p| p.repeat as i32).collect();
    let sample_id: Vec<i64> = (0..p.len() as i64).collect();
    let site: Vec<&str> = p.iter().map(|p| p.site.as_str()).collect();
    let subject: Vec<&str> = p.iter().map(|p| p.subject.as_str()).collect();
    let fold: Vec<i32> = p.iter().map(|p| p.fold as i32).collect();
    let y_true: Vec<&str> = p.iter().map(|p| p.y_true.as_str()).collect();
    let y_pred: Vec<&str> = p.iter().map(|p| p.y_pred.as_str()).collect();
    let score: Vec<Option<f64>> = p.iter().map(|p| p.score).collect();
    client
        .execute(
            "INSERT INTO predictions (run_id, repeat, sample_id, site, subject, fold, y_true, y_pred, score)
             SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::float8[])",
            &[&run.run_id, &repeat, &sample_id, &site, &subject, &fold, &y_true, &y_pred, &score],
        )
        .await
        .unwrap();
}

/// Writes a statistics job as the stats worker does.
pub async fn insert_stats(db: &TestDb, stats: &StatsData) {
    let client = db.client().await;
    insert_project(&client, &stats.project, &stats.region_labels).await;
    client
        .execute(
            "INSERT INTO stats_jobs (id, project, test, covariate, sites, n_samples, n_features, results,
                                     duration_ms, job_id, message_id, trace_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'm-2', $11, $12)",
            &[
                &stats.id,
                &stats.project,
                &stats.test,
                &stats.covariate,
                &stats.sites,
                &(stats.n_samples as i32),
                &(stats.n_features as i32),
                &serde_json::to_value(&stats.results).unwrap(),
                &stats.duration_ms,
                &stats.job_id,
                &stats.trace_id,
                &stats.created_at,
            ],
        )
        .await
        .unwrap();
}

/// Runs the report handler on one `report.v1 { run_id: id }`, as the worker would.
pub async fn handle(db: &TestDb, handler: &swarm_report::ReportHandler, id: Uuid) -> Outcome {
    let meta = MessageMeta {
        queue: "test.report".to_owned(),
        message_id: Uuid::now_v7().to_string(),
        message_type: "report.v1".to_owned(),
        job_id: Some("job-under-test".to_owned()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
    };
    swarm_runtime::process::handle_once(
        handler,
        &db.pool,
        meta,
        broker_schemas::ReportV1 { run_id: id },
    )
    .await
}

/// [`handle`], which must store the report (not dead-letter the message).
pub async fn renders(db: &TestDb, handler: &swarm_report::ReportHandler, id: Uuid) {
    let outcome = handle(db, handler, id).await;
    assert!(matches!(outcome, Outcome::Processed(_)), "{outcome:?}");
}

/// The stored report of `id`: (kind, summary, markdown, html, json).
pub async fn stored(db: &TestDb, id: Uuid) -> (String, String, String, String, serde_json::Value) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT kind, summary, markdown, html, json FROM reports WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

// ---------------------------------------------------------------------------------------------
// HTML checks.

/// Elements that have no end tag in HTML.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Everything the tokenizer saw: problems, and every (element, attribute, value).
#[derive(Default)]
struct Seen {
    stack: Vec<String>,
    problems: Vec<String>,
    attributes: Vec<(String, String, String)>,
    /// Text inside `<style>`.
    css: String,
    in_style: bool,
}

struct Checker(RefCell<Seen>);

impl TokenSink for Checker {
    type Handle = ();

    fn process_token(&self, token: Token, line: u64) -> TokenSinkResult<()> {
        let mut seen = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.to_string();
                let in_svg = seen.stack.iter().any(|t| t == "svg");
                match tag.kind {
                    TagKind::StartTag => {
                        for a in &tag.attrs {
                            seen.attributes.push((
                                name.clone(),
                                a.name.local.to_string(),
                                a.value.to_string(),
                            ));
                        }
                        let void = VOID.contains(&name.as_str());
                        if tag.self_closing && !in_svg && !void {
                            seen.problems
                                .push(format!("line {line}: <{name}/> is not a void element"));
                        }
                        if !void && !(tag.self_closing && (in_svg || name == "svg")) {
                            seen.stack.push(name.clone());
                        }
                        match name.as_str() {
                            "style" => {
                                seen.in_style = true;
                                return TokenSinkResult::RawData(RawKind::Rawtext);
                            }
                            "title" | "textarea" => {
                                return TokenSinkResult::RawData(RawKind::Rcdata)
                            }
                            "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
                            _ => {}
                        }
                    }
                    TagKind::EndTag => {
                        seen.in_style = false;
                        match seen.stack.pop() {
                            Some(open) if open == name => {}
                            Some(open) => seen
                                .problems
                                .push(format!("line {line}: </{name}> closes <{open}>")),
                            None => seen
                                .problems
                                .push(format!("line {line}: </{name}> closes nothing")),
                        }
                    }
                }
            }
            Token::CharacterTokens(text) if seen.in_style => seen.css.push_str(&text),
            Token::ParseError(error) => seen.problems.push(format!("line {line}: {error}")),
            Token::EOFToken => {
                let open = std::mem::take(&mut seen.stack);
                if !open.is_empty() {
                    seen.problems
                        .push(format!("unclosed elements at the end: {open:?}"));
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// What is wrong with a page as HTML: tokenizer errors, an end tag that does not close the
/// innermost open element, elements left open, and the HTML5 tree builder's errors.
pub fn html_problems(page: &str) -> Vec<String> {
    let (mut problems, _, _) = tokenize(page);
    let document = scraper::Html::parse_document(page);
    problems.extend(document.errors.iter().map(|e| format!("tree builder: {e}")));
    problems
}

fn tokenize(page: &str) -> (Vec<String>, Vec<(String, String, String)>, String) {
    let tokenizer = Tokenizer::new(
        Checker(RefCell::new(Seen::default())),
        TokenizerOpts {
            exact_errors: true,
            ..Default::default()
        },
    );
    let input = BufferQueue::default();
    input.push_back(StrTendril::from(page));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let seen = tokenizer.sink.0.into_inner();
    (seen.problems, seen.attributes, seen.css)
}

/// Fails with the problems if `page` is not valid HTML (see [`html_problems`]).
#[track_caller]
pub fn assert_valid_html(page: &str) {
    let problems = html_problems(page);
    assert!(problems.is_empty(), "HTML problems: {problems:#?}");
}

/// Every URL the page would load or link to outside itself, except `allowed` (exact values):
/// attribute values with a scheme other than `data:` on a download link, protocol-relative
/// paths, and `url(`/`@import` in the CSS.
pub fn external_urls(page: &str, allowed: &[&str]) -> Vec<String> {
    let (_, attributes, css) = tokenize(page);
    let mut found = Vec::new();
    for (element, name, value) in attributes {
        let v = value.trim().to_ascii_lowercase();
        let url_like = v.contains("://")
            || v.starts_with("//")
            || v.starts_with("javascript:")
            || v.starts_with("data:");
        let loads = [
            "src",
            "srcset",
            "href",
            "xlink:href",
            "action",
            "formaction",
            "poster",
            "data",
            "background",
            "xmlns",
        ]
        .contains(&name.as_str());
        if !(url_like || (loads && !v.starts_with('#') && !v.is_empty() && name != "download")) {
            continue;
        }
        let csv_download = element == "a" && name == "href" && v.starts_with("data:text/csv;");
        if csv_download || allowed.contains(&value.as_str()) {
            continue;
        }
        found.push(format!(
            "<{element} {name}=\"{}\">",
            value.chars().take(80).collect::<String>()
        ));
    }
    for needle in ["url(", "@import", "://"] {
        if css.contains(needle) {
            found.push(format!("CSS contains {needle}"));
        }
    }
    found
}

/// Fails with the URLs if `page` loads or links to anything outside itself but `allowed` (see
/// [`external_urls`]).
#[track_caller]
pub fn assert_self_contained(page: &str, allowed: &[&str]) {
    let urls = external_urls(page, allowed);
    assert!(urls.is_empty(), "external URLs: {urls:?}");
}

// ---------------------------------------------------------------------------------------------
// Chromium.

/// Debian's `chromium`, or `CHROMIUM` when set.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let out = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// What headless Chromium made of a page: the console messages it logged and the DOM after
/// loading.
pub struct Loaded {
    pub console: Vec<String>,
    pub dom: String,
    pub stderr: String,
}

/// Loads `page` (a file) in headless Chromium with a fresh profile, `--dump-dom`, logging to
/// stderr; `extra` adds flags (e.g. `--screenshot=…`).
pub fn load_in_chromium(chromium: &Path, page: &Path, extra: &[String]) -> Loaded {
    let profile = std::env::temp_dir().join(format!("swarm-chromium-{}", Uuid::new_v4().simple()));
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=2000",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.args(extra);
    command.arg("--dump-dom");
    command.arg(format!("file://{}", page.display()));
    let out = command.output().expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let console = stderr
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
        })
        .map(str::to_owned)
        .collect();
    Loaded {
        console,
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

// ---------------------------------------------------------------------------------------------
// The broker, for the test of the real pipeline.

/// A namespace of its own on the shared broker, deleted by [`Broker::finish`].
pub struct Broker {
    pub settings: swarm_runtime::Settings,
    topology: swarm_runtime::Topology,
    connection: lapin::Connection,
    publisher: swarm_runtime::Publisher,
}

impl Broker {
    pub async fn new(db: &TestDb) -> Self {
        let mut settings = swarm_runtime::Settings::local();
        settings.database_url = db.url.clone();
        if let Ok(url) = std::env::var("AMQP_URL") {
            settings.amqp_url = url;
        }
        settings.namespace = format!("test-report-{}", &Uuid::new_v4().simple().to_string()[..12]);
        settings.shutdown_timeout_secs = 10;
        settings.db_pool_size = 4;
        let connection = swarm_runtime::amqp::connect(&settings.amqp_url, "swarm-test")
            .await
            .expect("RabbitMQ is reachable (run .ci/run or start it)");
        let publisher = swarm_runtime::Publisher::new(&connection, "swarm-test")
            .await
            .unwrap();
        let topology = swarm_runtime::Topology::new(settings.namespace.clone());
        topology.declare(publisher.channel()).await.unwrap();
        Self {
            settings,
            topology,
            connection,
            publisher,
        }
    }

    /// Publishes a message the way the CLI does.
    pub async fn send<M: broker_schemas::Message>(&self, message: &M, job_id: &str) {
        self.publisher
            .send(&self.topology, message, Some(job_id))
            .await
            .unwrap();
    }

    /// Deletes the namespace's queues and exchanges.
    pub async fn finish(self) {
        let channel = self.connection.create_channel().await.unwrap();
        self.topology.delete(&channel).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Polls a count until it is `expected`, failing after [`PATIENCE`].
pub async fn wait_for(db: &TestDb, sql: &str, expected: i64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let n = db.count(sql).await;
        if n == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {n}, expected {expected}, after {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls until the run's report is stored (`Ok`) or a message of its job is dead-lettered
/// (`Err` with the queue and reason), failing after [`PATIENCE`].
pub async fn wait_for_report(db: &TestDb, run_id: Uuid) -> Result<(), String> {
    let deadline = std::time::Instant::now() + PATIENCE;
    let job = run_id.to_string();
    loop {
        let client = db.client().await;
        let reports: i64 = client
            .query_one("SELECT count(*) FROM reports WHERE run_id = $1", &[&run_id])
            .await
            .unwrap()
            .get(0);
        if reports == 1 {
            return Ok(());
        }
        if let Some(dead) = client
            .query_opt(
                "SELECT queue, reason FROM dead_letters WHERE correlation_id = $1 LIMIT 1",
                &[&job],
            )
            .await
            .unwrap()
        {
            return Err(format!(
                "dead-lettered in {}: {}",
                dead.get::<_, String>(0),
                dead.get::<_, String>(1)
            ));
        }
        drop(client);
        assert!(
            std::time::Instant::now() < deadline,
            "no report of run {run_id} after {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Publishes `sites`' samples to project `ages` through real workers (ingest, features, train,
/// report), trains `model` with `params` under the default validation, stops the workers, and
/// returns the database, the run id and whether the run was reported (else the dead letter).
pub async fn train_through_the_pipeline(
    sites: &[(&str, Vec<broker_schemas::Sample>)],
    model: &str,
    params: &[(&str, &str)],
) -> (TestDb, Uuid, Result<(), String>) {
    use broker_schemas::{IngestV1, TrainOptions, TrainRequest, TrainV1};
    let db = TestDb::new().await;
    let world = Broker::new(&db).await;
    let workers = swarm::commands::demo::spawn_workers(&world.settings);
    for (site, samples) in sites {
        let batch = IngestV1 {
            project: "ages".to_owned(),
            site: (*site).to_owned(),
            samples: samples.clone(),
        };
        world.send(&batch, "ingest-job").await;
    }
    let n: usize = sites.iter().map(|(_, samples)| samples.len()).sum();
    wait_for(&db, "SELECT count(*) FROM features", n as i64).await;

    let run_id = Uuid::now_v7();
    let request = TrainRequest {
        train: TrainV1 {
            run_id,
            project: "ages".to_owned(),
            model: model.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cv: Default::default(),
            sites: Vec::new(),
        },
        options: TrainOptions::default(),
    };
    world.send(&request, &run_id.to_string()).await;
    let reported = wait_for_report(&db, run_id).await;
    for worker in workers {
        worker.stop().await.expect("the worker stops cleanly");
    }
    world.finish().await;
    (db, run_id, reported)
}

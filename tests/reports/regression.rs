//! Regression runs through the whole pipeline: numeric labels published to the real workers
//! (ingest → features → train → report, through the broker) get a stored report with HTML,
//! Markdown and JSON, the predicted-vs-true and residual charts, and a `report_summary` row
//! with `reported_at`, for every regression model; the subjects' covariates are listed.

use broker_schemas::Sample;

use crate::helpers::*;

pub const SITES: [&str; 2] = ["lab-a", "lab-b"];
pub const PER_SITE: usize = 20;
const FEATURES: usize = 6;

/// Subjects whose target is a linear function of the first two features plus a little noise,
/// so every regression model has something to find.
pub fn regression_samples(site_index: usize) -> Vec<Sample> {
    (0..PER_SITE)
        .map(|i| {
            // A deterministic spread of values (no RNG needed): a few incommensurate waves.
            let values: Vec<f32> = (0..FEATURES)
                .map(|j| {
                    let t = (i * 7 + j * 13 + site_index * 29) as f32;
                    (t * 0.37).sin() * 2.0 + (t * 0.11).cos()
                })
                .collect();
            let noise = ((i * 31 + site_index * 17) as f64 * 0.53).sin() * 0.3;
            let target = 50.0 + 6.0 * f64::from(values[0]) - 4.0 * f64::from(values[1]) + noise;
            let mut sample = Sample::vector(
                format!("{}-sub-{i:02}", SITES[site_index]),
                format!("{target:.3}"),
                values,
            );
            sample
                .covariates
                .insert("age".to_owned(), 20.0 + (i % 10) as f64);
            sample
        })
        .collect()
}

/// Publishes the samples, trains `model` with `params`, and checks the stored report.
async fn a_regression_run_is_reported(model: &str, params: &[(&str, &str)]) {
    let sites: Vec<(&str, Vec<Sample>)> = SITES
        .iter()
        .enumerate()
        .map(|(index, site)| (*site, regression_samples(index)))
        .collect();
    let n = (SITES.len() * PER_SITE) as i64;
    let (db, run_id, reported) = train_through_the_pipeline(&sites, model, params).await;
    if let Err(reason) = reported {
        panic!("{model}: no report: {reason}");
    }

    // What `swarm train --wait` prints: R², not a NaN accuracy.
    let headline = swarm::commands::train::wait_for_report(&db.pool, run_id, PATIENCE)
        .await
        .unwrap()
        .headline();
    assert!(
        headline.starts_with("r2 ") && headline.contains(" ± ") && !headline.contains("NaN"),
        "{model}: {headline}"
    );

    let (kind, summary, markdown, html, json) = stored(&db, run_id).await;
    assert_eq!(kind, "run");
    assert!(summary.contains("R²"), "{model}: {summary}");
    assert!(
        summary.contains("shuffled 5-fold cross-validation"),
        "{model}: {summary}"
    );
    let document = scraper::Html::parse_document(&html);
    for chart in ["scatter", "residuals", "folds", "sites"] {
        let selector =
            scraper::Selector::parse(&format!("svg.chart[data-chart=\"{chart}\"]")).unwrap();
        assert_eq!(
            document.select(&selector).count(),
            1,
            "{model}: the {chart} chart"
        );
    }
    assert_valid_html(&html);
    assert_self_contained(&html, &[]);
    for needle in [
        "## Predicted and true values",
        "| Fold | Train | Test | R² | MAE | RMSE | Pearson r |",
        "## Scores per site",
        "residual = predicted − true",
        // The covariates of the run's subjects, in the data section: ages 20–29.
        "| age | 40 | 24.500 |",
    ] {
        assert!(
            markdown.contains(needle),
            "{model}: the Markdown lacks {needle:?}"
        );
    }
    assert_eq!(json["main_metric"], "r2", "{model}");
    assert_eq!(json["results"]["task"], "regression", "{model}");
    assert_eq!(json["predictions"].as_array().unwrap().len(), n as usize);
    assert_eq!(json["results"]["per_site"].as_array().unwrap().len(), 2);

    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT reported_at IS NOT NULL, main_metric, main_score, mae, rmse \
             FROM report_summary WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "{model}: report_summary.reported_at");
    assert_eq!(row.get::<_, String>(1), "r2");
    for (column, value) in [(2, "main_score"), (3, "mae"), (4, "rmse")] {
        let value_of: Option<f64> = row.get(column);
        assert!(
            value_of.is_some_and(f64::is_finite),
            "{model}: report_summary.{value} is {value_of:?}"
        );
    }
    drop(client);
    db.finish().await;
}

#[tokio::test]
async fn a_linear_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("linear", &[]).await;
}

#[tokio::test]
async fn a_ridge_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("ridge", &[]).await;
}

#[tokio::test]
async fn a_lasso_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("lasso", &[("alpha", "0.1")]).await;
}

#[tokio::test]
async fn an_svr_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("svr", &[]).await;
}

#[tokio::test]
async fn a_random_forest_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("random_forest_regressor", &[("n_estimators", "20")]).await;
}

#[tokio::test]
async fn an_elastic_net_regression_is_reported_end_to_end() {
    a_regression_run_is_reported("elastic_net", &[("alpha", "0.1")]).await;
}

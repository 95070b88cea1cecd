//! Feature weights through the whole pipeline: a three-class logistic regression's report has
//! a table of coefficients per class, a linear SVC's one per class pair, and each says its
//! overall values are means of |coefficient|.

use broker_schemas::Sample;

use crate::helpers::*;
use crate::regression::{regression_samples, SITES};

/// The regression subjects, their target cut into three classes (low, mid, high).
fn three_class_samples(site_index: usize) -> Vec<Sample> {
    regression_samples(site_index)
        .into_iter()
        .map(|mut sample| {
            let target: f64 = sample.label.parse().expect("a number");
            sample.label = match target {
                t if t < 46.0 => "low",
                t if t < 54.0 => "mid",
                _ => "high",
            }
            .to_owned();
            sample
        })
        .collect()
}

#[tokio::test]
async fn a_multiclass_logistic_reports_coefficients_per_class() {
    let sites: Vec<(&str, Vec<Sample>)> = SITES
        .iter()
        .enumerate()
        .map(|(index, site)| (*site, three_class_samples(index)))
        .collect();
    let (db, run_id, reported) = train_through_the_pipeline(&sites, "logistic", &[]).await;
    if let Err(reason) = reported {
        panic!("no report: {reason}");
    }
    let (_, _, markdown, html, json) = stored(&db, run_id).await;
    let classes = json["classes"].as_array().unwrap().clone();
    assert_eq!(classes.len(), 3, "{classes:?}");
    let per_class = json["results"]["feature_weights"]["per_class"]
        .as_array()
        .expect("per-class weights are stored");
    assert_eq!(per_class.len(), 3);
    for (weights, class) in per_class.iter().zip(&classes) {
        assert_eq!(&weights["class"], class);
        assert_eq!(weights["values"].as_array().unwrap().len(), 6);
        let class = class.as_str().unwrap();
        assert!(
            markdown.contains(&format!("### Class {class}")),
            "{markdown}"
        );
        assert!(html.contains(&format!("<h3>Class {class}</h3>")));
    }
    assert!(html.contains("mean |coefficients| over the classes"));
    assert!(markdown.contains(r"mean \|coefficients\| over the classes"));
    assert!(!markdown.contains("No feature weights"));
    assert_valid_html(&html);
    db.finish().await;
}

#[tokio::test]
async fn a_multiclass_linear_svc_reports_coefficients_per_class_pair() {
    let sites: Vec<(&str, Vec<Sample>)> = SITES
        .iter()
        .enumerate()
        .map(|(index, site)| (*site, three_class_samples(index)))
        .collect();
    let (db, run_id, reported) =
        train_through_the_pipeline(&sites, "svc", &[("kernel", "linear")]).await;
    if let Err(reason) = reported {
        panic!("no report: {reason}");
    }
    let (_, _, markdown, html, json) = stored(&db, run_id).await;
    let pairs = json["results"]["feature_weights"]["per_class"]
        .as_array()
        .expect("per-pair weights are stored");
    assert_eq!(pairs.len(), 3, "one weight vector per pair of 3 classes");
    for pair in pairs {
        let (class, against) = (
            pair["class"].as_str().unwrap(),
            pair["against"]
                .as_str()
                .expect("the class it is weighed against"),
        );
        assert!(
            markdown.contains(&format!("### Class {class} against {against}")),
            "{markdown}"
        );
        assert!(html.contains(&format!("positive ones favour {class} over {against}")));
    }
    assert!(markdown.contains(r"mean \|coefficients\| over the class pairs"));
    assert!(!markdown.contains("No feature weights"));
    assert_valid_html(&html);
    db.finish().await;
}

//! The whole pipeline against the real RabbitMQ and Postgres: each test has its own namespace and
//! database, and runs the workers in-process.

mod checks;
mod cli;
mod dead_letters;
mod delivery;
mod features;
mod flow;
mod helpers;
mod names;
mod operations;
mod reproducibility;
mod status;
mod text;
mod upsert;

use std::collections::BTreeMap;

use broker_schemas::{Sample, SampleKind};

fn vector(subject: &str, label: &str, values: Vec<f32>) -> Sample {
    Sample {
        subject: subject.into(),
        label: label.into(),
        kind: SampleKind::Vector,
        values,
        timepoints: None,
        covariates: Default::default(),
        text: None,
    }
}

fn by_site(data: Vec<(String, Sample)>) -> BTreeMap<String, Vec<Sample>> {
    let mut sites: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (site, sample) in data {
        sites.entry(site).or_default().push(sample);
    }
    sites
}

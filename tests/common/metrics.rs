//! Reads keysmith's Prometheus endpoint: one scrape, every sample by its
//! name and labels.
use std::collections::{BTreeMap, BTreeSet};

/// A sample's name and labels.
type Series = (String, BTreeSet<(String, String)>);

/// One scrape: every sample by its name and labels.
pub struct Scrape(BTreeMap<Series, f64>);

impl Scrape {
    /// The sample of `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, String)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.0.get(&(name.to_owned(), labels)).copied()
    }

    /// The sum of the samples of `name` that carry these labels, among others.
    pub fn sum(&self, name: &str, labels: &[(&str, String)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, have), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.contains(&(k.to_string(), v.clone())))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

pub async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics endpoint answers");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    Scrape(text.lines().filter_map(sample).collect())
}

/// `name{k="v",...} value`, or `name value`; None for comments.
fn sample(line: &str) -> Option<(Series, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), BTreeSet::new()),
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}')?;
            let mut labels = BTreeSet::new();
            let mut chars = rest.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert((key.trim_start_matches(',').to_owned(), value));
                if chars.peek() == Some(&',') {
                    chars.next();
                }
            }
            (name.to_owned(), labels)
        }
    };
    Some(((name, labels), value))
}

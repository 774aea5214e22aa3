//! Reading a Prometheus endpoint in tests: one scrape, and the value of a metric.

use std::io::{Read, Write};
use std::time::Duration;

/// `GET /metrics` from `addr` ("host:port"); the whole response (headers too). Fails the test
/// unless the answer is 200.
pub fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: pgherd\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

/// The values of the samples of `name` whose labels contain `labels`.
pub fn values(body: &str, name: &str, labels: &str) -> Vec<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// The value of the first sample of `name` whose labels contain `labels`.
pub fn value(body: &str, name: &str, labels: &str) -> Option<f64> {
    values(body, name, labels).first().copied()
}

//! A real Prometheus in tests (Debian's `prometheus` package, installed by
//! `scripts/install.sh`): started on a free port with a temporary storage directory, static
//! targets with their labels and rule files, and its HTTP API (instant queries, rules).

use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path` from Prometheus at `addr`; the JSON body.
pub fn api(addr: &str, path: &str) -> Value {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to Prometheus");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {head}\n{body}"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: the result's series (a scalar counts as one), or the error.
pub fn query(addr: &str, promql: &str) -> Result<Vec<Value>, String> {
    let v = api(
        addr,
        &format!("/api/v1/query?query={}", percent_encode(promql)),
    );
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    match v["data"]["resultType"].as_str() {
        Some("vector") | Some("matrix") => {
            Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
        }
        _ => Ok(vec![v["data"]["result"].clone()]),
    }
}

/// The values of `label` in the series `promql` returns.
pub fn label_values(addr: &str, promql: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> = query(addr, promql)
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
        .collect();
    values.sort();
    values.dedup();
    values
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Its HTTP API ("127.0.0.1:port").
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape target with its static labels.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `job` label (CloudNativePG's PodMonitors give `<namespace>/<name>`).
    pub job: String,
    pub addr: String,
    pub labels: Vec<(&'static str, String)>,
}

/// Prometheus scraping `targets` every 2 s and evaluating `rules` every second.
pub fn start(targets: &[Target], rules: &[PathBuf]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\nrule_files:\n",
    );
    for r in rules {
        config.push_str(&format!("  - {:?}\n", r.canonicalize().unwrap()));
    }
    config.push_str("scrape_configs:\n");
    for t in targets {
        // One job per target: the job label is the PodMonitor's ("namespace/cluster").
        config.push_str(&format!(
            "  - job_name: {:?}\n    static_configs:\n      - targets: [{:?}]\n        labels:\n",
            format!("{}#{}", t.job, t.addr),
            t.addr
        ));
        config.push_str(&format!("          job: {:?}\n", t.job));
        for (k, v) in &t.labels {
            config.push_str(&format!("          {k}: {v:?}\n"));
        }
    }
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, &config).unwrap();
    let addr = format!("127.0.0.1:{}", crate::free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus runs (Debian's prometheus package, scripts/install.sh)");
    let p = Prometheus { child, addr, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&p.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "prometheus did not start:\n{config}\n{}",
            std::fs::read_to_string(p.dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    p
}

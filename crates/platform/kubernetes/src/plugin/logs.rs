//! `logs cluster` (the instances' logs, merged) and `report cluster` (a zip of the cluster's
//! objects, events and logs, Secrets redacted).

use super::{PluginError, Result, Target};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use std::io::Write;

/// How to read logs.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<i64>,
}

fn params(options: &LogOptions) -> LogParams {
    LogParams {
        container: Some("postgres".to_string()),
        follow: options.follow,
        timestamps: options.timestamps,
        tail_lines: options.tail,
        ..LogParams::default()
    }
}

/// The sort key of a log line: its timestamp (a JSON log's `ts`, or kubectl's
/// `--timestamps` prefix), else none (the line keeps its place).
fn line_time(line: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if let Some(ts) = v.get("ts").or_else(|| v.get("timestamp")) {
            return Some(ts.as_str().map_or_else(|| ts.to_string(), str::to_string));
        }
    }
    let first = line.split_whitespace().next()?;
    (first.len() >= 20 && first.as_bytes().get(4) == Some(&b'-')).then(|| first.to_string())
}

/// Lines of several Pods merged in time order where they carry a time (stable otherwise).
pub fn merge(logs: &[(String, String)]) -> Vec<String> {
    let mut lines: Vec<(Option<String>, usize, String)> = Vec::new();
    for (pod, text) in logs {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let shown = if line.starts_with('{') {
                line.to_string()
            } else {
                format!("{pod} {line}")
            };
            lines.push((line_time(line), lines.len(), shown));
        }
    }
    lines.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => x.cmp(y).then(a.1.cmp(&b.1)),
        _ => a.1.cmp(&b.1),
    });
    lines.into_iter().map(|(_, _, l)| l).collect()
}

impl Target {
    /// Every instance's log (`pod`, text); a Pod whose log cannot be read gets a line saying
    /// why.
    pub async fn instance_logs(
        &self,
        cluster: &str,
        options: &LogOptions,
    ) -> Result<Vec<(String, String)>> {
        self.cluster(cluster).await?;
        let pods = self.instance_pods(cluster).await?;
        let mut out = Vec::new();
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let text = match self
                .pods()
                .logs(
                    &name,
                    &params(&LogOptions {
                        follow: false,
                        ..options.clone()
                    }),
                )
                .await
            {
                Ok(t) => t,
                Err(e) => format!("(the log of Pod {name} cannot be read: {})\n", short(&e)),
            };
            out.push((name, text));
        }
        Ok(out)
    }

    /// Follow every instance's log, writing lines as they come until all streams end.
    pub async fn follow_logs(&self, cluster: &str, options: &LogOptions) -> Result<()> {
        use futures_util::{AsyncBufReadExt, TryStreamExt};
        self.cluster(cluster).await?;
        let pods = self.instance_pods(cluster).await?;
        let mut tasks = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api = self.pods();
            let p = params(&LogOptions {
                follow: true,
                ..options.clone()
            });
            tasks.push(tokio::spawn(async move {
                match api.log_stream(&name, &p).await {
                    Ok(stream) => {
                        let mut lines = stream.lines();
                        while let Ok(Some(line)) = lines.try_next().await {
                            let shown = if line.starts_with('{') {
                                line
                            } else {
                                format!("{name} {line}")
                            };
                            let mut out = std::io::stdout().lock();
                            if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("(the log of Pod {name} cannot be followed: {})", short(&e))
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }

    /// `report cluster`: a zip at `file` with the Cluster, its Pods, PVCs, Jobs, Services,
    /// Poolers, Backups, PodDisruptionBudgets (as `yaml` or `json`), the namespace's events
    /// about them, Secrets' names and keys (values redacted), and the instances' logs.
    pub async fn report(
        &self,
        cluster: &str,
        file: &std::path::Path,
        json: bool,
        logs: bool,
    ) -> Result<Vec<String>> {
        let c = self.cluster(cluster).await?;
        let ext = if json { "json" } else { "yaml" };
        let render = |v: &serde_json::Value| -> Result<String> {
            if json {
                serde_json::to_string_pretty(v).map_err(|e| PluginError::Io(e.to_string()))
            } else {
                serde_yaml_ng::to_string(v).map_err(|e| PluginError::Io(e.to_string()))
            }
        };
        let to_value = |v: &dyn erased::Serialize| v.value();
        let mut entries: Vec<(String, String)> = Vec::new();
        entries.push((format!("cluster.{ext}"), render(&to_value(&c))?));
        let selector = format!("{}={cluster}", crate::labels::CLUSTER);
        let lp = ListParams::default().labels(&selector);
        let client = self.client.clone();
        let ns = self.namespace.clone();
        macro_rules! listed {
            ($ty:ty, $file:expr) => {{
                let api: Api<$ty> = Api::namespaced(client.clone(), &ns);
                match api.list(&lp).await {
                    Ok(list) => {
                        let items: Vec<serde_json::Value> =
                            list.items.iter().map(|o| to_value(o)).collect();
                        entries.push((
                            format!("{}.{ext}", $file),
                            render(&serde_json::Value::Array(items))?,
                        ));
                    }
                    Err(e) => entries.push((format!("{}.error.txt", $file), short(&e))),
                }
            }};
        }
        listed!(Pod, "pods");
        listed!(k8s_openapi::api::core::v1::PersistentVolumeClaim, "pvcs");
        listed!(k8s_openapi::api::batch::v1::Job, "jobs");
        listed!(k8s_openapi::api::core::v1::Service, "services");
        listed!(k8s_openapi::api::policy::v1::PodDisruptionBudget, "pdbs");
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
        match secrets.list(&lp).await {
            Ok(list) => {
                let items: Vec<serde_json::Value> =
                    list.items.iter().map(redacted_secret).collect();
                entries.push((
                    format!("secrets.{ext}"),
                    render(&serde_json::Value::Array(items))?,
                ));
            }
            Err(e) => entries.push(("secrets.error.txt".to_string(), short(&e))),
        }
        for kind in ["Pooler", "Backup"] {
            let file_name = format!("{}s", kind.to_lowercase());
            match self.dynamic(kind).list(&ListParams::default()).await {
                Ok(list) => {
                    let items: Vec<serde_json::Value> = list
                        .items
                        .iter()
                        .filter(|o| o.data["spec"]["cluster"]["name"].as_str() == Some(cluster))
                        .map(|o| to_value(o))
                        .collect();
                    entries.push((
                        format!("{file_name}.{ext}"),
                        render(&serde_json::Value::Array(items))?,
                    ));
                }
                Err(e) => entries.push((format!("{file_name}.error.txt"), short(&e))),
            }
        }
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        match events.list(&ListParams::default()).await {
            Ok(list) => {
                let items: Vec<serde_json::Value> =
                    list.items
                        .iter()
                        .filter(|e| {
                            e.involved_object.name.as_deref().is_some_and(|n| {
                                n == cluster || n.starts_with(&format!("{cluster}-"))
                            })
                        })
                        .map(|o| to_value(o))
                        .collect();
                entries.push((
                    format!("events.{ext}"),
                    render(&serde_json::Value::Array(items))?,
                ));
            }
            Err(e) => entries.push(("events.error.txt".to_string(), short(&e))),
        }
        if logs {
            for (pod, text) in self
                .instance_logs(
                    cluster,
                    &LogOptions {
                        timestamps: true,
                        ..LogOptions::default()
                    },
                )
                .await?
            {
                entries.push((format!("logs/{pod}.log"), text));
            }
        }
        write_zip(file, cluster, &entries)?;
        Ok(entries.into_iter().map(|(n, _)| n).collect())
    }
}

/// A Secret with every value replaced by `<redacted>` (names and keys kept).
fn redacted_secret(secret: &k8s_openapi::api::core::v1::Secret) -> serde_json::Value {
    let mut v = serde_json::to_value(secret).unwrap_or_default();
    for field in ["data", "stringData"] {
        if let Some(map) = v.get_mut(field).and_then(|d| d.as_object_mut()) {
            for value in map.values_mut() {
                *value = serde_json::Value::String("<redacted>".to_string());
            }
        }
    }
    if let Some(annotations) = v["metadata"]["annotations"].as_object_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    v
}

fn write_zip(file: &std::path::Path, cluster: &str, entries: &[(String, String)]) -> Result<()> {
    let io = |e: &dyn std::fmt::Display| {
        PluginError::Io(format!("cannot write {}: {e}", file.display()))
    };
    let out = std::fs::File::create(file).map_err(|e| io(&e))?;
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        zip.start_file(format!("report_cluster_{cluster}/{name}"), options)
            .map_err(|e| io(&e))?;
        zip.write_all(content.as_bytes()).map_err(|e| io(&e))?;
    }
    zip.finish().map_err(|e| io(&e))?;
    Ok(())
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Serialization into a JSON value for any object (without managed fields).
mod erased {
    pub trait Serialize {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Serialize for T {
        fn value(&self) -> serde_json::Value {
            let mut v = serde_json::to_value(self).unwrap_or_default();
            if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("managedFields");
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_merge_by_time() {
        let logs = vec![
            ("a".to_string(), "{\"ts\":\"2026-01-01T00:00:02Z\",\"msg\":\"a2\"}\n{\"ts\":\"2026-01-01T00:00:04Z\",\"msg\":\"a4\"}\n".to_string()),
            ("b".to_string(), "{\"ts\":\"2026-01-01T00:00:03Z\",\"msg\":\"b3\"}\n".to_string()),
        ];
        let merged = merge(&logs);
        assert!(
            merged[0].contains("a2") && merged[1].contains("b3") && merged[2].contains("a4"),
            "{merged:?}"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "data": {"password": "c2VjcmV0"}
        }))
        .unwrap();
        let v = redacted_secret(&s);
        assert_eq!(v["data"]["password"], "<redacted>");
    }
}

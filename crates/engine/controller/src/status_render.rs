//! The text of `status` (both `kubectl cnpg status` and `pgherd local status`): the sections
//! of [`StatusView`] with CloudNativePG's titles, labels, column headers and order, laid out
//! as its plugin lays them out (compared section by section with its documented output in
//! `tests/status_golden.rs`). `verbosity` is the number of `-v`: one adds replication slot
//! details, the unmanaged replication slots, managed roles, tablespaces (and pgherd's
//! conditions); two adds the certificates. pgherd adds poolers, endpoints and notes. Pure.

mod text;
mod verbose;

use crate::operations;
use crate::status_view::StatusView;
use std::fmt::Write;
use text::{dash, fields, go_duration, go_time, table};
use verbose::{managed_roles, tablespaces, unmanaged_slots};

pub const CLUSTER_SUMMARY: &str = "Cluster Summary";
pub const REPLICA_CLUSTER_SUMMARY: &str = "Replica Cluster Summary";
pub const HIBERNATION: &str = "Hibernation";
pub const CERTIFICATES: &str = "Certificates Status";
pub const CONTINUOUS_BACKUP: &str = "Continuous Backup status";
pub const STREAMING_REPLICATION: &str = "Streaming Replication status";
pub const UNMANAGED_SLOTS: &str = "Unmanaged Replication Slot Status";
pub const MANAGED_ROLES: &str = "Managed roles status";
pub const IRRECONCILABLE_ROLES: &str = "Irreconcilable roles";
pub const TABLESPACES: &str = "Tablespaces status";
pub const INSTANCES: &str = "Instances status";
/// pgherd's: the Poolers in front of the cluster.
pub const POOLERS: &str = "Poolers status";
/// pgherd's (verbose): the Cluster's conditions.
pub const CONDITIONS: &str = "Conditions";

/// Titles of the sections, in the order they are printed (a section without anything to say
/// is left out; see [`render`]).
pub const SECTIONS: [&str; 12] = [
    CLUSTER_SUMMARY,
    HIBERNATION,
    CERTIFICATES,
    CONTINUOUS_BACKUP,
    STREAMING_REPLICATION,
    UNMANAGED_SLOTS,
    MANAGED_ROLES,
    IRRECONCILABLE_ROLES,
    TABLESPACES,
    INSTANCES,
    POOLERS,
    CONDITIONS,
];

/// Render `view` as text; `verbosity` counts the `-v` flags.
pub fn render(view: &StatusView, verbosity: u8) -> String {
    let mut out = String::new();
    summary(&mut out, view);
    if let Some(h) = &view.hibernation {
        section(&mut out, HIBERNATION);
        fields(
            &mut out,
            &[
                (
                    "Status",
                    if h.hibernated { "Hibernated" } else { "Active" }.into(),
                ),
                ("Message", h.message.clone()),
                ("Time", go_time(&h.time)),
            ],
        );
    }
    if verbosity > 1 && !view.certificates.is_empty() {
        certificates(&mut out, view);
    }
    // A hibernated cluster has no instance to ask.
    if !view.hibernation.as_ref().is_some_and(|h| h.hibernated) {
        continuous_backup(&mut out, view);
        if view.summary.replica_source.is_none() {
            streaming_replication(&mut out, view, verbosity > 0);
        }
        if verbosity > 0 {
            unmanaged_slots(&mut out, view);
            managed_roles(&mut out, view);
            tablespaces(&mut out, view);
        }
        instances(&mut out, view);
    }
    pgherd_sections(&mut out, view, verbosity);
    out
}

/// A blank line, then the title (every section but the first).
fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}

fn summary(out: &mut String, view: &StatusView) {
    let s = &view.summary;
    let replica = s.replica_source.is_some();
    let _ = writeln!(
        out,
        "{}",
        if replica {
            REPLICA_CLUSTER_SUMMARY
        } else {
            CLUSTER_SUMMARY
        }
    );
    if s.target_primary.is_some() {
        let _ = writeln!(
            out,
            "{}",
            if s.primary.is_some() {
                "Switchover in progress"
            } else {
                "Primary server is initializing"
            }
        );
    }
    let primary = match (&s.primary, &s.target_primary) {
        (Some(p), Some(t)) => format!("{p} (switching to {t})"),
        (p, _) => dash(p.as_deref()).to_string(),
    };
    let mut rows: Vec<(&str, String)> = vec![("Name", format!("{}/{}", s.namespace, s.name))];
    if let Some(id) = &s.system_id {
        rows.push(("System ID", id.clone()));
    }
    rows.push(("PostgreSQL Image", dash(s.image.as_deref()).to_string()));
    match &s.replica_source {
        Some(source) => {
            rows.push(("Designated primary", primary));
            rows.push(("Source cluster", source.clone()));
        }
        None => rows.push(("Primary instance", primary)),
    }
    if let Some(token) = &s.demotion_token {
        rows.push(("Demotion token", token.clone()));
    }
    if let Some(token) = &s.pending_promotion_token {
        rows.push((
            "Promotion token",
            format!("{token} (promoting once replayed past it)"),
        ));
    }
    let hibernated = view.hibernation.as_ref().is_some_and(|h| h.hibernated);
    let primary_fenced = s
        .primary
        .as_deref()
        .is_some_and(|p| operations::is_fenced(&s.fenced_instances, p));
    if hibernated {
        rows.push(("Status", "Hibernated".into()));
    } else if primary_fenced {
        rows.push(("Status", "Primary instance is fenced".into()));
    } else {
        if let Some(start) = &s.primary_start_time {
            let uptime = s
                .primary_uptime_seconds
                .map(|u| format!(" (uptime {})", go_duration(u)))
                .unwrap_or_default();
            rows.push(("Primary start time", format!("{}{uptime}", go_time(start))));
        }
        let reason = s.phase_reason.as_deref().unwrap_or_default();
        rows.push((
            "Status",
            format!("{} {reason}", s.phase).trim_end().to_string(),
        ));
    }
    rows.push(("Instances", s.instances.to_string()));
    rows.push(("Ready instances", s.ready_instances.to_string()));
    if !s.fenced_instances.is_empty() {
        let fenced = if s
            .fenced_instances
            .iter()
            .any(|f| f == operations::ALL_INSTANCES)
        {
            "All Instances".to_string()
        } else {
            s.fenced_instances.join(", ")
        };
        rows.push(("Fenced instances", fenced));
    }
    if !replica {
        match (&s.current_write_lsn, s.timeline, &s.wal_file) {
            (Some(lsn), Some(tl), Some(wal)) => rows.push((
                "Current Write LSN",
                format!("{lsn} (Timeline: {tl} - WAL File: {wal})"),
            )),
            (Some(lsn), _, _) => rows.push(("Current Write LSN", lsn.clone())),
            _ => {}
        }
    }
    fields(out, &rows);
    if !s.endpoints.is_empty() {
        let width = s.endpoints.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let _ = writeln!(out, "Endpoints:");
        for (kind, addr) in &s.endpoints {
            let _ = writeln!(out, "  {kind:<width$}  {addr}");
        }
    }
}

fn certificates(out: &mut String, view: &StatusView) {
    section(out, CERTIFICATES);
    let rows: Vec<Vec<String>> = view
        .certificates
        .iter()
        .map(|c| {
            let left = match c.days_left {
                None => "-".to_string(),
                Some(d) if d < 0 => "Expired".to_string(),
                Some(d) if d < 7 => format!("{d} - Expires Soon"),
                Some(d) => d.to_string(),
            };
            vec![c.secret.clone(), c.expiration.clone(), left]
        })
        .collect();
    table(
        out,
        &[
            "Certificate Name",
            "Expiration Date",
            "Days Left Until Expiration",
        ],
        &rows,
    );
}

fn continuous_backup(out: &mut String, view: &StatusView) {
    section(out, CONTINUOUS_BACKUP);
    let b = &view.continuous_backup;
    if !b.configured && b.last_successful_backup.is_none() && b.last_failed_backup.is_none() {
        let _ = writeln!(out, "Not configured");
        return;
    }
    let wal = |name: &Option<String>, at: &Option<String>| match (name, at) {
        (Some(n), Some(t)) => format!("{n} @ {t}"),
        (Some(n), None) => n.clone(),
        _ => "-".to_string(),
    };
    let text = |v: &Option<String>| dash(v.as_deref()).to_string();
    fields(
        out,
        &[
            (
                "First Point of Recoverability",
                text(&b.first_recoverability_point),
            ),
            ("Last Successful Backup", text(&b.last_successful_backup)),
            ("Last Failed Backup", text(&b.last_failed_backup)),
            ("Working WAL archiving", text(&b.wal_archiving)),
            (
                "Last Archived WAL",
                wal(&b.last_archived_wal, &b.last_archived_time),
            ),
            (
                "Last Failed WAL",
                wal(&b.last_failed_wal, &b.last_failed_time),
            ),
        ],
    );
}

fn streaming_replication(out: &mut String, view: &StatusView, verbose: bool) {
    section(out, STREAMING_REPLICATION);
    if view.streaming_replication.is_empty() {
        let why = view.streaming_replication_absent.as_deref();
        let _ = writeln!(out, "{}", why.unwrap_or("Not available yet"));
        return;
    }
    let slots = view.replication_slots_enabled;
    if slots {
        let _ = writeln!(out, "Replication Slots Enabled");
    }
    let mut header = vec![
        "Name",
        "Sent LSN",
        "Write LSN",
        "Flush LSN",
        "Replay LSN",
        "Write Lag",
        "Flush Lag",
        "Replay Lag",
        "State",
        "Sync State",
        "Sync Priority",
    ];
    if slots {
        header.push("Replication Slot");
        if verbose {
            header.extend(["Slot Restart LSN", "Slot WAL Status", "Slot Safe WAL Size"]);
        }
    }
    let text = |v: &Option<String>| dash(v.as_deref()).to_string();
    let rows: Vec<Vec<String>> = view
        .streaming_replication
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                text(&r.sent_lsn),
                text(&r.write_lsn),
                text(&r.flush_lsn),
                text(&r.replay_lsn),
                text(&r.write_lag),
                text(&r.flush_lag),
                text(&r.replay_lag),
                r.state.clone(),
                r.sync_state.clone(),
                r.sync_priority.map_or("-".to_string(), |p| p.to_string()),
            ];
            match (&r.slot, slots, verbose) {
                (_, false, _) => {}
                (Some(s), true, v) => {
                    row.push(if s.active { "active" } else { "inactive" }.into());
                    if v {
                        row.push(dash(s.restart_lsn.map(|l| l.to_string()).as_deref()).into());
                        row.push(dash(s.wal_status.as_deref()).into());
                        row.push(s.safe_wal_size.map_or("NULL".into(), |w| w.to_string()));
                    }
                }
                (None, true, v) => row.extend(vec!["-".to_string(); if v { 4 } else { 1 }]),
            }
            row
        })
        .collect();
    table(out, &header, &rows);
}

/// CloudNativePG's columns, then pgherd's `Timeline` and `Lag (bytes)`.
fn instances(out: &mut String, view: &StatusView) {
    section(out, INSTANCES);
    let rows: Vec<Vec<String>> = view
        .instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                dash(i.current_lsn.as_deref()).to_string(),
                i.role.clone(),
                i.status.clone(),
                dash(i.qos.as_deref()).to_string(),
                dash(i.manager_version.as_deref()).to_string(),
                dash(i.node.as_deref()).to_string(),
                i.timeline.map_or("-".to_string(), |t| t.to_string()),
                i.lag_bytes.map_or("-".to_string(), |l| l.to_string()),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Name",
            "Current LSN",
            "Replication role",
            "Status",
            "QoS",
            "Manager Version",
            "Node",
            "Timeline",
            "Lag (bytes)",
        ],
        &rows,
    );
}

/// What CloudNativePG's plugin does not show: the Poolers, the conditions (verbose) and what
/// could not be read.
fn pgherd_sections(out: &mut String, view: &StatusView, verbosity: u8) {
    if !view.poolers.is_empty() {
        section(out, POOLERS);
        let rows: Vec<Vec<String>> = view
            .poolers
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.pooler_type.clone(),
                    format!("{}/{}", p.ready_instances, p.instances),
                    dash(p.endpoint.as_deref()).to_string(),
                    if p.paused { "paused" } else { "active" }.to_string(),
                ]
            })
            .collect();
        table(out, &["Name", "Type", "Ready", "Endpoint", "State"], &rows);
    }
    if verbosity > 0 && !view.conditions.is_empty() {
        section(out, CONDITIONS);
        let rows: Vec<Vec<String>> = view
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.condition_type.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        table(out, &["Type", "Status", "Reason", "Message"], &rows);
    }
    if !view.notes.is_empty() {
        let _ = writeln!(out);
        for note in &view.notes {
            let _ = writeln!(out, "Note: {note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_view::{build, InstanceFacts, ViewInput};
    use pgherd_instance_protocol::ReplicationInfo;
    use pgherd_postgres::Lsn;

    fn cluster() -> pgherd_api::Cluster {
        let mut c: pgherd_api::Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pc", "namespace": "db",
                         "annotations": {"cnpg.io/fencedInstances": "[\"pc-3\"]"}},
            "spec": {"instances": 3},
            "status": {"phase": "Cluster in healthy state", "instances": 3, "readyInstances": 2,
                       "currentPrimary": "pc-1", "targetPrimary": "pc-1", "timelineID": 1,
                       "certificates": {"expirations": {"pc-ca": "2030-01-01T00:00:00Z"}}}
        }))
        .unwrap();
        c.metadata.namespace = Some("db".into());
        c
    }

    #[test]
    fn sections_in_order_with_instances_and_lag() {
        let c = cluster();
        let primary = InstanceFacts {
            name: "pc-1".into(),
            role: Some("primary".into()),
            ready: Some(true),
            current_lsn: Some(Lsn(0x3000148)),
            timeline: Some(1),
            node: Some("node-a".into()),
            replication: vec![ReplicationInfo {
                application_name: "pc-2".into(),
                state: "streaming".into(),
                sync_state: "async".into(),
                sent_lsn: Some(Lsn(0x3000148)),
                write_lsn: Some(Lsn(0x3000148)),
                flush_lsn: Some(Lsn(0x3000148)),
                replay_lsn: Some(Lsn(0x3000100)),
                write_lag: Some("00:00:00".into()),
                flush_lag: Some("00:00:00".into()),
                replay_lag: Some("00:00:00.0012".into()),
                sync_priority: Some(0),
            }],
            ..Default::default()
        };
        let replica = InstanceFacts {
            name: "pc-2".into(),
            role: Some("replica".into()),
            ready: Some(true),
            current_lsn: Some(Lsn(0x3000100)),
            timeline: Some(1),
            ..Default::default()
        };
        let fenced = InstanceFacts {
            name: "pc-3".into(),
            role: Some("down".into()),
            ready: Some(false),
            ..Default::default()
        };
        let view = build(ViewInput {
            cluster: Some(&c),
            namespace: "db".into(),
            name: "pc".into(),
            instances: vec![fenced, replica, primary],
            now: 0,
            ..Default::default()
        });
        let text = render(&view, 2);
        let mut at = 0;
        for section in [
            CLUSTER_SUMMARY,
            CERTIFICATES,
            CONTINUOUS_BACKUP,
            STREAMING_REPLICATION,
            UNMANAGED_SLOTS,
            MANAGED_ROLES,
            TABLESPACES,
            INSTANCES,
        ] {
            let found = text[at..].find(section).map(|p| p + at);
            assert!(
                found.is_some(),
                "{section} missing or out of order:\n{text}"
            );
            at = found.unwrap_or(at);
        }
        assert!(
            text.contains("0/3000148 (Timeline: 1 - WAL File: 000000010000000000000003)"),
            "{text}"
        );
        assert!(text.contains("Standby (async)"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Fenced instances: ") && l.ends_with(" pc-3")),
            "{text}"
        );
        assert_eq!(view.instances[2].role, "Fenced");
        assert_eq!(view.instances[1].lag_bytes, Some(0x48));
        assert_eq!(view.instances[0].role, "Primary");
        assert!(!text.contains(POOLERS));
        // Certificates take -v -v; the verbose sections -v.
        let plain = render(&view, 0);
        assert!(!plain.contains(CERTIFICATES) && !plain.contains(MANAGED_ROLES));
        assert!(render(&view, 1).contains(MANAGED_ROLES));
        assert!(!render(&view, 1).contains(CERTIFICATES));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["summary"]["primary"], "pc-1");
    }

    /// The summary's variants and the sections' "nothing to show" lines, as CloudNativePG's.
    #[test]
    fn switchover_hibernation_replica_cluster_and_single_instance() {
        let view = |patch: serde_json::Value, instances: Vec<InstanceFacts>| {
            let mut c = serde_json::to_value(cluster()).unwrap();
            json_merge(&mut c, patch);
            let c: pgherd_api::Cluster = serde_json::from_value(c).unwrap();
            render(
                &build(ViewInput {
                    cluster: Some(&c),
                    namespace: "db".into(),
                    name: "pc".into(),
                    instances,
                    ..Default::default()
                }),
                0,
            )
        };
        let primary = || InstanceFacts {
            name: "pc-1".into(),
            role: Some("primary".into()),
            ready: Some(true),
            ..Default::default()
        };
        let text = view(
            serde_json::json!({"status": {"targetPrimary": "pc-2"}}),
            vec![],
        );
        assert!(
            text.starts_with("Cluster Summary\nSwitchover in progress\n"),
            "{text}"
        );
        assert!(text.contains("pc-1 (switching to pc-2)\n"), "{text}");
        assert!(text.contains("Streaming Replication status\nPrimary instance not found\n"));
        let text = view(
            serde_json::json!({"status": {"conditions": [{"type": "cnpg.io/hibernation",
                "status": "True", "reason": "Hibernated", "message": "Cluster has been hibernated",
                "lastTransitionTime": "2026-01-02T03:04:05Z"}]}}),
            vec![],
        );
        let hibernation = "\nHibernation\nStatus:   Hibernated\n\
                           Message:  Cluster has been hibernated\n\
                           Time:     2026-01-02 03:04:05 +0000 UTC\n";
        assert!(text.contains(hibernation), "{text}");
        assert!(
            !text.contains(INSTANCES) && !text.contains(CONTINUOUS_BACKUP),
            "{text}"
        );
        let text = view(
            serde_json::json!({"spec": {"replica": {"enabled": true, "source": "origin"}}}),
            vec![primary()],
        );
        assert!(text.starts_with("Replica Cluster Summary\n"), "{text}");
        assert!(text.contains("Designated primary:") && text.contains("Source cluster:"));
        assert!(!text.contains(STREAMING_REPLICATION) && !text.contains("Current Write LSN"));
        let text = view(
            serde_json::json!({"spec": {"instances": 1}}),
            vec![primary()],
        );
        assert!(
            text.contains("Streaming Replication status\nNot configured\n"),
            "{text}"
        );
        let text = view(serde_json::json!({}), vec![primary()]);
        assert!(
            text.contains("Streaming Replication status\nNot available yet\n"),
            "{text}"
        );
    }

    fn json_merge(into: &mut serde_json::Value, patch: serde_json::Value) {
        match (into, patch) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }
}

//! The text of `status` (both `kubectl cnpg status` and `pgherd local status`): the sections
//! of [`StatusView`] in CloudNativePG's order — cluster summary, certificates, continuous
//! backup, streaming replication, instances, poolers — as labelled lines and aligned tables.
//! `verbose` adds the phase reason, conditions and endpoints. Pure.

use crate::status_view::StatusView;
use std::fmt::Write;

/// Titles of the sections, in order (tests and docs refer to them).
pub const SECTIONS: [&str; 6] = [
    "Cluster Summary",
    "Certificates Status",
    "Continuous Backup status",
    "Streaming Replication status",
    "Instances status",
    "Poolers status",
];

fn dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// Lines `label: value` with the values aligned.
fn fields(out: &mut String, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
    for (label, value) in rows {
        let _ = writeln!(out, "{:<width$}{value}", format!("{label}:"));
    }
}

/// An aligned table with a header.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    let _ = writeln!(
        out,
        "{}",
        line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect()
        )
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// Render `view` as text.
pub fn render(view: &StatusView, verbose: bool) -> String {
    let mut out = String::new();
    let s = &view.summary;

    let _ = writeln!(out, "{}", SECTIONS[0]);
    let mut rows: Vec<(&str, String)> = vec![
        ("Name", format!("{}/{}", s.namespace, s.name)),
        ("System ID", dash(s.system_id.as_deref()).to_string()),
        ("PostgreSQL Image", dash(s.image.as_deref()).to_string()),
        ("Primary instance", dash(s.primary.as_deref()).to_string()),
        (
            "Primary start time",
            dash(s.primary_start_time.as_deref()).to_string(),
        ),
    ];
    if let Some(target) = &s.target_primary {
        rows.push(("Target primary", target.clone()));
    }
    rows.push(("Status", s.phase.clone()));
    if let Some(reason) = s
        .phase_reason
        .as_ref()
        .filter(|_| verbose || s.phase != crate::phase::HEALTHY)
    {
        rows.push(("Status reason", reason.clone()));
    }
    rows.push(("Instances", s.instances.to_string()));
    rows.push(("Ready instances", s.ready_instances.to_string()));
    rows.push((
        "Current Write LSN",
        match (&s.current_write_lsn, s.timeline, &s.wal_file) {
            (Some(lsn), Some(tl), Some(wal)) => format!("{lsn} (Timeline: {tl} - WAL File: {wal})"),
            (Some(lsn), _, _) => lsn.clone(),
            _ => "-".to_string(),
        },
    ));
    if !s.fenced_instances.is_empty() {
        rows.push(("Fenced instances", s.fenced_instances.join(", ")));
    }
    if let Some(h) = &s.hibernation {
        rows.push(("Hibernation", h.clone()));
    }
    fields(&mut out, &rows);
    if !s.endpoints.is_empty() {
        let width = s.endpoints.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let _ = writeln!(out, "Endpoints:");
        for (kind, addr) in &s.endpoints {
            let _ = writeln!(out, "  {kind:<width$}  {addr}");
        }
    }

    if !view.certificates.is_empty() {
        let _ = writeln!(out, "\n{}", SECTIONS[1]);
        let rows: Vec<Vec<String>> = view
            .certificates
            .iter()
            .map(|c| {
                vec![
                    c.secret.clone(),
                    c.expiration.clone(),
                    c.days_left.map_or("-".to_string(), |d| d.to_string()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Certificate Name",
                "Expiration Date",
                "Days Left Until Expiration",
            ],
            &rows,
        );
    }

    let _ = writeln!(out, "\n{}", SECTIONS[2]);
    let b = &view.continuous_backup;
    if !b.configured && b.last_successful_backup.is_none() && b.last_failed_backup.is_none() {
        let _ = writeln!(out, "Not configured");
    } else {
        let wal = |name: &Option<String>, at: &Option<String>| match (name, at) {
            (Some(n), Some(t)) => format!("{n} @ {t}"),
            (Some(n), None) => n.clone(),
            _ => "-".to_string(),
        };
        fields(
            &mut out,
            &[
                (
                    "First Point of Recoverability",
                    dash(b.first_recoverability_point.as_deref()).to_string(),
                ),
                (
                    "Last Successful Backup",
                    dash(b.last_successful_backup.as_deref()).to_string(),
                ),
                (
                    "Last Failed Backup",
                    dash(b.last_failed_backup.as_deref()).to_string(),
                ),
                (
                    "Working WAL archiving",
                    dash(b.wal_archiving.as_deref()).to_string(),
                ),
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

    let _ = writeln!(out, "\n{}", SECTIONS[3]);
    if view.streaming_replication.is_empty() {
        let _ = writeln!(
            out,
            "No standby streams from the primary (or its status is not available)"
        );
    } else {
        let rows: Vec<Vec<String>> = view
            .streaming_replication
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    dash(r.sent_lsn.as_deref()).to_string(),
                    dash(r.write_lsn.as_deref()).to_string(),
                    dash(r.flush_lsn.as_deref()).to_string(),
                    dash(r.replay_lsn.as_deref()).to_string(),
                    r.replay_lag_bytes
                        .map_or("-".to_string(), |l| l.to_string()),
                    r.state.clone(),
                    r.sync_state.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Name",
                "Sent LSN",
                "Write LSN",
                "Flush LSN",
                "Replay LSN",
                "Replay Lag (bytes)",
                "State",
                "Sync State",
            ],
            &rows,
        );
    }

    let _ = writeln!(out, "\n{}", SECTIONS[4]);
    let rows: Vec<Vec<String>> = view
        .instances
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                dash(i.current_lsn.as_deref()).to_string(),
                i.lag_bytes.map_or("-".to_string(), |l| l.to_string()),
                i.timeline.map_or("-".to_string(), |t| t.to_string()),
                i.role.clone(),
                i.status.clone(),
                dash(i.node.as_deref()).to_string(),
                dash(i.manager_version.as_deref()).to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "Name",
            "Current LSN",
            "Lag (bytes)",
            "Timeline",
            "Role",
            "Status",
            "Node",
            "Manager Version",
        ],
        &rows,
    );

    if !view.poolers.is_empty() {
        let _ = writeln!(out, "\n{}", SECTIONS[5]);
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
        table(
            &mut out,
            &["Name", "Type", "Ready", "Endpoint", "State"],
            &rows,
        );
    }

    if verbose && !view.conditions.is_empty() {
        let _ = writeln!(out, "\nConditions");
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
        table(&mut out, &["Type", "Status", "Reason", "Message"], &rows);
    }

    if !view.notes.is_empty() {
        let _ = writeln!(out);
        for note in &view.notes {
            let _ = writeln!(out, "Note: {note}");
        }
    }
    out
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
                write_lag: None,
                flush_lag: None,
                replay_lag: None,
                sync_priority: None,
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
        let text = render(&view, false);
        let mut at = 0;
        for section in [
            SECTIONS[0],
            SECTIONS[1],
            SECTIONS[2],
            SECTIONS[3],
            SECTIONS[4],
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
        assert!(text.contains("Fenced"), "{text}");
        assert_eq!(view.instances[1].lag_bytes, Some(0x48));
        assert_eq!(view.instances[0].role, "Primary");
        assert!(!text.contains(SECTIONS[5]));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["summary"]["primary"], "pc-1");
    }
}

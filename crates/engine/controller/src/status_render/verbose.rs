//! The sections `-v` adds (CloudNativePG's): the primary's replication slots that are not
//! the high-availability ones, the managed roles and the tablespaces.

use super::text::table;
use super::{section, IRRECONCILABLE_ROLES, MANAGED_ROLES, TABLESPACES, UNMANAGED_SLOTS};
use crate::status_view::StatusView;
use std::fmt::Write;

pub(super) fn unmanaged_slots(out: &mut String, view: &StatusView) {
    section(out, UNMANAGED_SLOTS);
    if view.unmanaged_replication_slots.is_empty() {
        let _ = writeln!(out, "No unmanaged replication slots found");
        return;
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows: Vec<Vec<String>> = view
        .unmanaged_replication_slots
        .iter()
        .map(|s| {
            vec![
                s.slot_name.clone(),
                s.slot_type.clone(),
                text(&s.database),
                s.active.to_string(),
                s.restart_lsn.map(|l| l.to_string()).unwrap_or_default(),
                text(&s.xmin),
                text(&s.catalog_xmin),
                text(&s.datoid),
                text(&s.plugin),
                text(&s.wal_status),
                s.safe_wal_size.map_or("NULL".into(), |w| w.to_string()),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Slot Name",
            "Slot Type",
            "Database",
            "Active",
            "Restart LSN",
            "XMin",
            "Catalog XMin",
            "Datoid",
            "Plugin",
            "Wal Status",
            "Safe Wal Size",
        ],
        &rows,
    );
}

pub(super) fn managed_roles(out: &mut String, view: &StatusView) {
    section(out, MANAGED_ROLES);
    let roles = &view.managed_roles;
    if roles.by_status.is_empty() && roles.cannot_reconcile.is_empty() {
        let _ = writeln!(out, "No roles managed");
        return;
    }
    let joined = |list: &[(String, Vec<String>)]| -> Vec<Vec<String>> {
        list.iter()
            .map(|(k, v)| vec![k.clone(), v.join(",")])
            .collect()
    };
    table(out, &["Status", "Roles"], &joined(&roles.by_status));
    if !roles.cannot_reconcile.is_empty() {
        section(out, IRRECONCILABLE_ROLES);
        table(out, &["Role", "Errors"], &joined(&roles.cannot_reconcile));
    }
}

pub(super) fn tablespaces(out: &mut String, view: &StatusView) {
    section(out, TABLESPACES);
    if view.tablespaces.is_empty() {
        let _ = writeln!(out, "No managed tablespaces");
        return;
    }
    let rows: Vec<Vec<String>> = view
        .tablespaces
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.owner.clone().unwrap_or_default(),
                t.state.clone(),
                t.temporary.to_string(),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        out,
        &["Tablespace", "Owner", "Status", "Temporary", "Error"],
        &rows,
    );
}

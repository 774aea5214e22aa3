//! Tablespaces (`spec.tablespaces`), each on a volume of its own mounted at the same path on
//! every instance. Every instance keeps each location ready ([`prepare_locations`]: an empty
//! directory `data` inside the mount, owned by the server's user, mode 0700) before its data
//! is made and before PostgreSQL starts, because a standby's WAL replay of `CREATE TABLESPACE`
//! needs the primary's path to exist. The primary creates the missing tablespaces and gives
//! each its declared owner ([`reconcile_tablespaces`]). None is ever dropped: a tablespace left
//! out of the spec keeps its data, as in CloudNativePG.

use super::plan::{apply_each, Failure, Statement};
use super::{ident, literal};
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{ApplyResult, TablespaceSpec};
use std::collections::BTreeMap;
use std::path::Path;
use tokio_postgres::Client;

/// What to do with files already in a tablespace's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// This instance's data is in place and refers to them.
    Keep,
    /// This instance's data is about to be made (initdb, a clone, a restore) and no data
    /// refers to them: an interrupted clone's or restore's leftovers, useless without the data
    /// directory they were copied with. Removed: `pg_basebackup` and `CREATE TABLESPACE` need
    /// the location empty, and a retried copy must not pile up copies.
    Discard,
    /// The data they belong to was set aside (a rejoin that clones again): set aside with it,
    /// next to the location (`data.set-aside-<time>`), never deleted.
    SetAside,
}

/// Make each tablespace's location directory where its volume is mounted (an empty one unless
/// `previous` is [`Previous::Keep`]). A tablespace whose volume is not mounted (its pod
/// predates it) is skipped: its directory is never made on the container's own filesystem.
/// Never fails the caller: a location that cannot be made is left as it is, and the
/// primary's result for that tablespace says it is pending (or PostgreSQL's own error).
pub fn prepare_locations(pg: &Postgres, tablespaces: &[TablespaceSpec], previous: Previous) {
    for t in tablespaces {
        if let Err(e) = prepare_location(pg, t, previous) {
            tracing::debug!("tablespace {}: {e}", t.name);
        }
    }
}

fn prepare_location(
    pg: &Postgres,
    t: &TablespaceSpec,
    previous: Previous,
) -> Result<(), InstanceError> {
    if !t.location.parent().is_some_and(Path::is_dir) {
        return Ok(());
    }
    if previous != Previous::Keep && holds_files(&t.location) {
        if previous == Previous::SetAside {
            let aside = crate::set_aside::set_aside(&t.location, "set-aside")?;
            tracing::warn!(
                "tablespace {}: kept with the data set aside, in {}",
                t.name,
                aside.display()
            );
        } else {
            tracing::warn!(
                "tablespace {}: removing what an interrupted copy left in {}",
                t.name,
                t.location.display()
            );
            std::fs::remove_dir_all(&t.location)
                .map_err(|e| InstanceError::io("cannot remove", &t.location, e))?;
        }
    }
    pg.user.own_dir(&t.location, 0o700)
}

fn holds_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// A tablespace as `pg_tablespace` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObservedTablespace {
    owner: String,
    location: String,
}

/// The statements that bring `t` to its declared state; `location_ready`: its location
/// directory exists (its volume is mounted).
fn plan_tablespace(
    t: &TablespaceSpec,
    observed: Option<&ObservedTablespace>,
    location_ready: bool,
) -> Result<Vec<Statement>, Failure> {
    let name = ident(&t.name)?;
    let location = t.location.display().to_string();
    let Some(observed) = observed else {
        if !t.creatable {
            return Err(Failure::Pending(
                "waiting for every instance's pod to mount its volume (a standby without it could not replay the creation)".into(),
            ));
        }
        if !location_ready {
            return Err(Failure::Pending(format!(
                "its volume is not mounted at {} yet (the primary's pod is recreated with it)",
                t.location.parent().unwrap_or(&t.location).display()
            )));
        }
        let owner = match &t.owner {
            Some(owner) => format!(" OWNER {}", ident(owner)?),
            None => String::new(),
        };
        return Ok(vec![Statement::new(format!(
            "CREATE TABLESPACE {name}{owner} LOCATION {}",
            literal(&location)?
        ))]);
    };
    if observed.location != location {
        return Err(Failure::Failed(format!(
            "a tablespace {:?} exists at {:?}, not on its volume at {location:?}",
            t.name, observed.location
        )));
    }
    Ok(match &t.owner {
        Some(owner) if *owner != observed.owner => vec![Statement::new(format!(
            "ALTER TABLESPACE {name} OWNER TO {}",
            ident(owner)?
        ))],
        _ => Vec::new(),
    })
}

async fn read_tablespaces(
    client: &Client,
    names: &[&str],
) -> Result<BTreeMap<String, ObservedTablespace>, Failure> {
    let rows = super::plan::timed_query(
        client,
        "the catalog",
        "SELECT spcname::text, pg_catalog.pg_get_userbyid(spcowner)::text, \
                pg_catalog.pg_tablespace_location(oid) \
           FROM pg_catalog.pg_tablespace WHERE spcname = ANY($1::text[])",
        names,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                ObservedTablespace {
                    owner: r.get(1),
                    location: r.get(2),
                },
            )
        })
        .collect())
}

/// On the primary: create the missing tablespaces and set their owners; one result each.
pub async fn reconcile_tablespaces(
    client: &Client,
    tablespaces: &[TablespaceSpec],
) -> Vec<ApplyResult> {
    let names: Vec<&str> = tablespaces.iter().map(|t| t.name.as_str()).collect();
    let observed = read_tablespaces(client, &names).await;
    apply_each(
        client,
        tablespaces,
        observed,
        |t| &t.name,
        async |executor, t, observed| {
            let statements = plan_tablespace(t, observed.get(&t.name), t.location.is_dir())?;
            executor.run_all(&statements).await
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, owner: Option<&str>) -> TablespaceSpec {
        TablespaceSpec {
            name: name.into(),
            owner: owner.map(Into::into),
            location: format!("/var/lib/postgresql/tablespaces/{name}/data").into(),
            temporary: false,
            creatable: true,
        }
    }

    fn sql(statements: Result<Vec<Statement>, Failure>) -> Vec<String> {
        statements.unwrap().into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn a_missing_tablespace_is_created_on_its_volume_with_its_owner() {
        assert_eq!(
            sql(plan_tablespace(&spec("Reports", Some("app")), None, true)),
            ["CREATE TABLESPACE \"Reports\" OWNER \"app\" LOCATION '/var/lib/postgresql/tablespaces/Reports/data'"]
        );
        assert_eq!(
            sql(plan_tablespace(&spec("scratch", None), None, true)),
            ["CREATE TABLESPACE \"scratch\" LOCATION '/var/lib/postgresql/tablespaces/scratch/data'"]
        );
        // Its volume not mounted yet: pending, nothing run.
        assert!(matches!(
            plan_tablespace(&spec("scratch", None), None, false),
            Err(Failure::Pending(m)) if m.contains("/var/lib/postgresql/tablespaces/scratch ")
        ));
        // Not every standby mounts it yet (pods being rolled): pending too.
        let waiting = TablespaceSpec {
            creatable: false,
            ..spec("scratch", None)
        };
        assert!(matches!(
            plan_tablespace(&waiting, None, true),
            Err(Failure::Pending(m)) if m.contains("every instance's pod")
        ));
    }

    #[test]
    fn an_existing_tablespace_changes_only_its_owner() {
        let t = spec("reports", Some("app"));
        let here = |owner: &str| ObservedTablespace {
            owner: owner.into(),
            location: t.location.display().to_string(),
        };
        assert!(sql(plan_tablespace(&t, Some(&here("app")), true)).is_empty());
        assert_eq!(
            sql(plan_tablespace(&t, Some(&here("postgres")), true)),
            ["ALTER TABLESPACE \"reports\" OWNER TO \"app\""]
        );
        // No owner declared: whoever owns it keeps it.
        let t = spec("reports", None);
        assert!(sql(plan_tablespace(&t, Some(&here("postgres")), true)).is_empty());
        // The name taken elsewhere: said, never moved.
        let elsewhere = ObservedTablespace {
            owner: "postgres".into(),
            location: "/srv/other".into(),
        };
        assert!(matches!(
            plan_tablespace(&t, Some(&elsewhere), true),
            Err(Failure::Failed(m)) if m.contains("/srv/other")
        ));
    }

    #[test]
    fn names_are_quoted_never_executed() {
        let t = spec("x\"; DROP TABLE t; --", Some("o'wner"));
        let statements = sql(plan_tablespace(&t, None, true));
        assert!(
            statements[0].starts_with(
                "CREATE TABLESPACE \"x\"\"; DROP TABLE t; --\" OWNER \"o'wner\" LOCATION '"
            ),
            "{statements:?}"
        );
    }
}

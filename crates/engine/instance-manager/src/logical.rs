//! Keeping publications and subscriptions (`kind: Publication` / `Subscription`) in their
//! declared state, on the primary, each in its own database. Every name and value is quoted
//! through `crate::sql` (`quote_identifier` / `quote_literal`). An object is applied again
//! when its spec changes, after a failure, and every [`RECHECK`] otherwise (it may have been
//! dropped by hand); one failure is reported for that object only.

use crate::observe::connect;
use crate::Postgres;
use pgherd_instance_protocol::{
    ApplyResult, PublicationObject, PublicationSpec, PublicationTarget, SubscriptionSpec,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long an applied object is trusted before it is checked again.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Subscription parameters `ALTER SUBSCRIPTION ... SET` accepts on an enabled subscription; the
/// others (`connect`, `create_slot`, `copy_data`, `enabled`) only apply at creation, as in
/// CloudNativePG, and so do `failover` and `two_phase` (PostgreSQL changes them only on a
/// disabled subscription: altering them on every pass failed and kept the pass from refreshing
/// a subscription created before its publication).
const ALTERABLE_SUBSCRIPTION_PARAMETERS: &[&str] = &[
    "slot_name",
    "synchronous_commit",
    "binary",
    "streaming",
    "disable_on_error",
    "password_required",
    "run_as_owner",
    "origin",
];

fn ident(name: &str) -> Result<String, String> {
    crate::sql::identifier(name).map_err(|e| e.to_string())
}

fn literal(value: &str) -> Result<String, String> {
    crate::sql::literal(value).map_err(|e| e.to_string())
}

async fn run(client: &Client, sql: &str) -> Result<(), String> {
    match tokio::time::timeout(crate::observe::QUERY_TIMEOUT * 6, client.batch_execute(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string())),
        Err(_) => Err("timed out".to_string()),
    }
}

/// `WITH (k = 'v', ...)` of `parameters` whose names `keep` accepts; empty when none.
fn with_clause(
    parameters: &BTreeMap<String, String>,
    keep: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let mut items = Vec::new();
    for (key, value) in parameters.iter().filter(|(k, _)| keep(k)) {
        items.push(format!("{} = {}", ident(key)?, literal(value)?));
    }
    Ok(if items.is_empty() {
        String::new()
    } else {
        format!("({})", items.join(", "))
    })
}

/// The object list of `CREATE PUBLICATION ... FOR` / `ALTER PUBLICATION ... SET`.
fn publication_objects(objects: &[PublicationObject]) -> Result<String, String> {
    let mut items = Vec::new();
    for object in objects {
        items.push(match object {
            PublicationObject::TablesInSchema { schema } => {
                format!("TABLES IN SCHEMA {}", ident(schema)?)
            }
            PublicationObject::Table {
                only,
                schema,
                name,
                columns,
            } => {
                let mut table = String::from("TABLE ");
                if *only {
                    table.push_str("ONLY ");
                }
                if let Some(schema) = schema {
                    table.push_str(&ident(schema)?);
                    table.push('.');
                }
                table.push_str(&ident(name)?);
                if !columns.is_empty() {
                    let columns: Result<Vec<String>, String> =
                        columns.iter().map(|c| ident(c)).collect();
                    table.push_str(&format!(" ({})", columns?.join(", ")));
                }
                table
            }
        });
    }
    if items.is_empty() {
        return Err("the publication lists no objects".to_string());
    }
    Ok(items.join(", "))
}

/// The statements that bring publication `p` to its declared state, given whether it exists.
pub fn publication_sql(p: &PublicationSpec, exists: bool) -> Result<Vec<String>, String> {
    let name = ident(&p.name)?;
    if !p.present {
        return Ok(if exists {
            vec![format!("DROP PUBLICATION {name}")]
        } else {
            Vec::new()
        });
    }
    let with = with_clause(&p.parameters, |_| true)?;
    if !exists {
        let target = match &p.target {
            PublicationTarget::AllTables => "FOR ALL TABLES".to_string(),
            PublicationTarget::Objects { objects } => {
                format!("FOR {}", publication_objects(objects)?)
            }
        };
        let with = if with.is_empty() {
            String::new()
        } else {
            format!(" WITH {with}")
        };
        return Ok(vec![format!("CREATE PUBLICATION {name} {target}{with}")]);
    }
    let mut out = Vec::new();
    if let PublicationTarget::Objects { objects } = &p.target {
        out.push(format!(
            "ALTER PUBLICATION {name} SET {}",
            publication_objects(objects)?
        ));
    }
    if !with.is_empty() {
        out.push(format!("ALTER PUBLICATION {name} SET {with}"));
    }
    Ok(out)
}

/// The subscription as PostgreSQL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSubscription {
    pub conninfo: String,
    pub publications: Vec<String>,
}

/// The statements that bring subscription `s` to its declared state, given what exists.
pub fn subscription_sql(
    s: &SubscriptionSpec,
    existing: Option<&ExistingSubscription>,
) -> Result<Vec<String>, String> {
    let name = ident(&s.name)?;
    let Some(existing) = existing else {
        if !s.present {
            return Ok(Vec::new());
        }
        let with = with_clause(&s.parameters, |_| true)?;
        let with = if with.is_empty() {
            String::new()
        } else {
            format!(" WITH {with}")
        };
        return Ok(vec![format!(
            "CREATE SUBSCRIPTION {name} CONNECTION {} PUBLICATION {}{with}",
            literal(&s.conninfo)?,
            ident(&s.publication)?
        )]);
    };
    if !s.present {
        return Ok(vec![format!("DROP SUBSCRIPTION {name}")]);
    }
    // Each its own statement: SET PUBLICATION refreshes, which cannot run in a transaction.
    let mut out = Vec::new();
    if existing.conninfo != s.conninfo {
        out.push(format!(
            "ALTER SUBSCRIPTION {name} CONNECTION {}",
            literal(&s.conninfo)?
        ));
    }
    if existing.publications != [s.publication.clone()] {
        out.push(format!(
            "ALTER SUBSCRIPTION {name} SET PUBLICATION {}",
            ident(&s.publication)?
        ));
    }
    let with = with_clause(&s.parameters, |k| {
        ALTERABLE_SUBSCRIPTION_PARAMETERS.contains(&k)
    })?;
    if !with.is_empty() {
        out.push(format!("ALTER SUBSCRIPTION {name} SET {with}"));
    }
    Ok(out)
}

async fn apply_publication(pg: &Postgres, p: &PublicationSpec) -> Result<(), String> {
    let client = connect(pg, &p.dbname).await.map_err(|e| e.to_string())?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&p.name],
        )
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    for statement in publication_sql(p, exists)? {
        run(&client, &statement).await?;
    }
    Ok(())
}

/// How long a statement that talks to the publisher may take. PostgreSQL's walreceiver
/// connection ignores libpq's `connect_timeout`, so a publisher that accepts and never answers
/// would hold `CREATE SUBSCRIPTION` (and its backend) for ever; a statement timeout cancels it.
const PUBLISHER_STATEMENT_TIMEOUT: &str = "SET statement_timeout = '20s'";

async fn apply_subscription(pg: &Postgres, s: &SubscriptionSpec) -> Result<(), String> {
    let client = connect(pg, &s.dbname).await.map_err(|e| e.to_string())?;
    run(&client, PUBLISHER_STATEMENT_TIMEOUT).await?;
    let existing = client
        .query_opt(
            "SELECT s.subconninfo, s.subpublications::text[] FROM pg_catalog.pg_subscription s \
             JOIN pg_catalog.pg_database d ON d.oid = s.subdbid \
             WHERE s.subname = $1 AND d.datname = current_database()",
            &[&s.name],
        )
        .await
        .map_err(|e| e.to_string())?
        .map(|row| ExistingSubscription {
            conninfo: row.get(0),
            publications: row.get(1),
        });
    for statement in subscription_sql(s, existing.as_ref())? {
        run(&client, &statement).await?;
    }
    if !s.present {
        return Ok(());
    }
    // A subscription created before its publication (both applied at once, each by its own
    // cluster) starts with no tables and would stay so: refresh until it has some.
    if subscription_tables(&client, &s.name).await? == 0 {
        run(
            &client,
            &format!("ALTER SUBSCRIPTION {} REFRESH PUBLICATION", ident(&s.name)?),
        )
        .await?;
        if subscription_tables(&client, &s.name).await? == 0 {
            return Err(format!(
                "publication {:?} has no tables on the publisher yet (or does not exist there): refreshing until it has",
                s.publication
            ));
        }
    }
    Ok(())
}

/// How many tables subscription `name` (of the current database) replicates.
async fn subscription_tables(client: &Client, name: &str) -> Result<i64, String> {
    client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_subscription_rel r \
             JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid \
             JOIN pg_catalog.pg_database d ON d.oid = s.subdbid \
             WHERE s.subname = $1 AND d.datname = current_database()",
            &[&name],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| e.to_string())
}

/// What was last applied, so an unchanged object is not re-applied on every pass.
#[derive(Debug, Default)]
pub struct Logical {
    last: BTreeMap<String, (String, Instant, ApplyResult)>,
}

impl Logical {
    fn fresh(&self, key: &str, fingerprint: &str) -> Option<ApplyResult> {
        self.last
            .get(key)
            .filter(|(f, at, r)| f == fingerprint && r.applied && at.elapsed() < RECHECK)
            .map(|(_, _, r)| r.clone())
    }

    fn record(&mut self, key: String, fingerprint: String, result: &ApplyResult) {
        self.last
            .insert(key, (fingerprint, Instant::now(), result.clone()));
    }

    /// Apply every publication and subscription now; one result each, by object name.
    pub async fn converge(
        &mut self,
        pg: &Postgres,
        publications: &[PublicationSpec],
        subscriptions: &[SubscriptionSpec],
    ) -> (Vec<ApplyResult>, Vec<ApplyResult>) {
        let mut published = Vec::new();
        for p in publications {
            let key = format!("publication/{}", p.object);
            let fingerprint = format!("{p:?}");
            let result = match self.fresh(&key, &fingerprint) {
                Some(r) => r,
                None => {
                    let outcome = apply_publication(pg, p).await;
                    let r = ApplyResult {
                        name: p.object.clone(),
                        applied: outcome.is_ok(),
                        message: outcome.err(),
                    };
                    self.record(key, fingerprint, &r);
                    r
                }
            };
            published.push(result);
        }
        let mut subscribed = Vec::new();
        for s in subscriptions {
            let key = format!("subscription/{}", s.object);
            let fingerprint = format!("{s:?}");
            let result = match self.fresh(&key, &fingerprint) {
                Some(r) => r,
                None => {
                    let outcome = apply_subscription(pg, s).await;
                    let r = ApplyResult {
                        name: s.object.clone(),
                        applied: outcome.is_ok(),
                        message: outcome.err(),
                    };
                    self.record(key, fingerprint, &r);
                    r
                }
            };
            subscribed.push(result);
        }
        (published, subscribed)
    }
}

type Results = (Vec<ApplyResult>, Vec<ApplyResult>);
/// A round's results, each with the fingerprint of the spec it was produced under.
type Round = (Vec<(String, ApplyResult)>, Vec<(String, ApplyResult)>);

/// [`Logical`] run off the supervisor's loop: a subscription talks to another server, which
/// may be slow or gone, and the primary's own duties (status, lease) must not wait for it.
/// Each pass starts a round when none is running and reports the last round's results.
#[derive(Debug, Default)]
pub struct BackgroundLogical {
    state: std::sync::Arc<tokio::sync::Mutex<Logical>>,
    results: std::sync::Arc<std::sync::Mutex<Round>>,
    round: Option<tokio::task::JoinHandle<()>>,
}

impl BackgroundLogical {
    /// Start a round for `publications` and `subscriptions` unless one is running; the
    /// results of the last finished round for the objects still declared as they were then.
    pub fn converge(
        &mut self,
        pg: &Postgres,
        publications: &[PublicationSpec],
        subscriptions: &[SubscriptionSpec],
    ) -> Results {
        if publications.is_empty() && subscriptions.is_empty() {
            return (Vec::new(), Vec::new());
        }
        if self.round.as_ref().is_none_or(|r| r.is_finished()) {
            let (state, results) = (self.state.clone(), self.results.clone());
            let (pg, publications, subscriptions) =
                (pg.clone(), publications.to_vec(), subscriptions.to_vec());
            self.round = Some(tokio::spawn(async move {
                let done = state
                    .lock()
                    .await
                    .converge(&pg, &publications, &subscriptions)
                    .await;
                let fingerprints = |specs: Vec<String>, results: Vec<ApplyResult>| {
                    specs.into_iter().zip(results).collect::<Vec<_>>()
                };
                let round = (
                    fingerprints(
                        publications.iter().map(|p| format!("{p:?}")).collect(),
                        done.0,
                    ),
                    fingerprints(
                        subscriptions.iter().map(|s| format!("{s:?}")).collect(),
                        done.1,
                    ),
                );
                if let Ok(mut r) = results.lock() {
                    *r = round;
                }
            }));
        }
        let Ok(last) = self.results.lock() else {
            return (Vec::new(), Vec::new());
        };
        // Only results produced under the spec now declared: a result for an older spec (the
        // object applied before it was marked for dropping, say) would be read as this one's.
        let keep = |round: &[(String, ApplyResult)], current: Vec<String>| -> Vec<ApplyResult> {
            round
                .iter()
                .filter(|(fingerprint, _)| current.contains(fingerprint))
                .map(|(_, r)| r.clone())
                .collect()
        };
        (
            keep(
                &last.0,
                publications.iter().map(|p| format!("{p:?}")).collect(),
            ),
            keep(
                &last.1,
                subscriptions.iter().map(|s| format!("{s:?}")).collect(),
            ),
        )
    }
}

impl Drop for BackgroundLogical {
    fn drop(&mut self) {
        if let Some(round) = &self.round {
            round.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(target: PublicationTarget) -> PublicationSpec {
        PublicationSpec {
            object: "p".into(),
            name: "pub \"all\"".into(),
            dbname: "app".into(),
            present: true,
            target,
            parameters: BTreeMap::from([("publish".into(), "insert, update".into())]),
        }
    }

    #[test]
    fn publications_are_created_altered_and_dropped_with_quoted_names() {
        let p = publication(PublicationTarget::AllTables);
        assert_eq!(
            publication_sql(&p, false).unwrap(),
            ["CREATE PUBLICATION \"pub \"\"all\"\"\" FOR ALL TABLES WITH (\"publish\" = 'insert, update')"]
        );
        let objects = PublicationTarget::Objects {
            objects: vec![
                PublicationObject::TablesInSchema {
                    schema: "sales".into(),
                },
                PublicationObject::Table {
                    only: true,
                    schema: Some("billing".into()),
                    name: "in'voices".into(),
                    columns: vec!["id".into(), "total".into()],
                },
            ],
        };
        let p = publication(objects);
        assert_eq!(
            publication_sql(&p, true).unwrap(),
            [
                "ALTER PUBLICATION \"pub \"\"all\"\"\" SET TABLES IN SCHEMA \"sales\", TABLE ONLY \"billing\".\"in'voices\" (\"id\", \"total\")",
                "ALTER PUBLICATION \"pub \"\"all\"\"\" SET (\"publish\" = 'insert, update')",
            ]
        );
        let gone = PublicationSpec {
            present: false,
            ..p
        };
        assert_eq!(
            publication_sql(&gone, true).unwrap(),
            ["DROP PUBLICATION \"pub \"\"all\"\"\""]
        );
        assert!(publication_sql(&gone, false).unwrap().is_empty());
    }

    #[test]
    fn subscriptions_change_only_what_differs() {
        let s = SubscriptionSpec {
            object: "s".into(),
            name: "sub".into(),
            dbname: "app".into(),
            present: true,
            publication: "pub".into(),
            conninfo: "host=127.0.0.1 port=5432 user=app passfile='/x/pass'".into(),
            parameters: BTreeMap::from([
                ("copy_data".into(), "false".into()),
                ("disable_on_error".into(), "true".into()),
            ]),
        };
        assert_eq!(
            subscription_sql(&s, None).unwrap(),
            ["CREATE SUBSCRIPTION \"sub\" CONNECTION 'host=127.0.0.1 port=5432 user=app passfile=''/x/pass''' PUBLICATION \"pub\" WITH (\"copy_data\" = 'false', \"disable_on_error\" = 'true')"]
        );
        let same = ExistingSubscription {
            conninfo: s.conninfo.clone(),
            publications: vec!["pub".into()],
        };
        // Only the alterable parameter is set again; copy_data applies at creation only.
        assert_eq!(
            subscription_sql(&s, Some(&same)).unwrap(),
            ["ALTER SUBSCRIPTION \"sub\" SET (\"disable_on_error\" = 'true')"]
        );
        let moved = ExistingSubscription {
            conninfo: "host=elsewhere".into(),
            publications: vec!["old".into()],
        };
        let statements = subscription_sql(&s, Some(&moved)).unwrap();
        assert!(statements[0].starts_with("ALTER SUBSCRIPTION \"sub\" CONNECTION "));
        assert_eq!(
            statements[1],
            "ALTER SUBSCRIPTION \"sub\" SET PUBLICATION \"pub\""
        );
        let gone = SubscriptionSpec {
            present: false,
            ..s
        };
        assert_eq!(
            subscription_sql(&gone, Some(&same)).unwrap(),
            ["DROP SUBSCRIPTION \"sub\""]
        );
    }
}

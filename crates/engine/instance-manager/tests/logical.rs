//! Publications and subscriptions on real PostgreSQL 15 (two servers): created with quoted
//! names, rows carried from publisher to subscriber, re-applied only on a change, dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_instance_manager::logical::Logical;
use pgherd_instance_manager::observe::connect;
use pgherd_instance_protocol::{
    PublicationObject, PublicationSpec, PublicationTarget, SubscriptionSpec,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PUBLICATION: &str = "orders \"pub\"";
const SUBSCRIPTION: &str = "orders'sub";

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn wait_for(client: &tokio_postgres::Client, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(client, sql).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_publication_and_a_subscription_carry_rows_and_are_dropped() {
    let publisher = pgherd_testkit::TestServer::start_logical();
    let subscriber = pgherd_testkit::TestServer::start();
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let schema = "CREATE TABLE items (id int PRIMARY KEY, note text); CREATE TABLE other (id int PRIMARY KEY)";
        for server in [&publisher, &subscriber] {
            let c = connect(&server.pg, "postgres").await.unwrap();
            c.batch_execute("CREATE DATABASE app").await.unwrap();
            connect(&server.pg, "app").await.unwrap().batch_execute(schema).await.unwrap();
        }
        let source = connect(&publisher.pg, "app").await.unwrap();
        source
            .batch_execute("INSERT INTO items SELECT g, 'before' FROM generate_series(1, 5) g; INSERT INTO other VALUES (1)")
            .await
            .unwrap();

        let mut on_publisher = Logical::default();
        let publication = PublicationSpec {
            object: "orders".into(),
            name: PUBLICATION.into(),
            dbname: "app".into(),
            present: true,
            target: PublicationTarget::Objects {
                objects: vec![PublicationObject::Table {
                    only: false,
                    schema: Some("public".into()),
                    name: "items".into(),
                    columns: vec![],
                }],
            },
            parameters: BTreeMap::from([("publish".into(), "insert, update, delete".into())]),
        };
        let (published, _) = on_publisher
            .converge(&publisher.pg, std::slice::from_ref(&publication), &[])
            .await;
        assert!(published[0].applied, "{published:?}");
        assert_eq!(
            count(&source, &format!("SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}' AND tablename = 'items'", PUBLICATION.replace('\'', "''"))).await,
            1
        );

        let mut on_subscriber = Logical::default();
        let subscription = SubscriptionSpec {
            object: "orders-sub".into(),
            name: SUBSCRIPTION.into(),
            dbname: "app".into(),
            present: true,
            publication: PUBLICATION.into(),
            conninfo: format!(
                "host='{}' port='{}' dbname='app' user='postgres'",
                publisher.pg.socket_dir.display(),
                publisher.pg.port
            ),
            // The slot is named after the subscription unless told otherwise, and slot names
            // allow only [a-z0-9_].
            parameters: BTreeMap::from([
                ("disable_on_error".into(), "true".into()),
                ("slot_name".into(), "orders_sub".into()),
            ]),
        };
        let (_, subscribed) = on_subscriber
            .converge(&subscriber.pg, &[], std::slice::from_ref(&subscription))
            .await;
        assert!(subscribed[0].applied, "{subscribed:?}");
        let target = connect(&subscriber.pg, "app").await.unwrap();
        wait_for(&target, "SELECT count(*) FROM items", 5).await;
        source.batch_execute("INSERT INTO items VALUES (6, 'after')").await.unwrap();
        wait_for(&target, "SELECT count(*) FROM items WHERE note = 'after'", 1).await;
        assert_eq!(count(&target, "SELECT count(*) FROM other").await, 0, "other is not published");

        // Unchanged: not applied again (a subscription dropped by hand comes back only after
        // the recheck interval).
        let (_, again) = on_subscriber
            .converge(&subscriber.pg, &[], std::slice::from_ref(&subscription))
            .await;
        assert!(again[0].applied);

        // A publication spec change is applied: now `other` as well.
        let mut wider = publication.clone();
        if let PublicationTarget::Objects { objects } = &mut wider.target {
            objects.push(PublicationObject::Table { only: false, schema: None, name: "other".into(), columns: vec![] });
        }
        let (published, _) = on_publisher.converge(&publisher.pg, std::slice::from_ref(&wider), &[]).await;
        assert!(published[0].applied, "{published:?}");
        assert_eq!(
            count(&source, &format!("SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}'", PUBLICATION.replace('\'', "''"))).await,
            2
        );

        // Dropped: the subscription (and its slot on the publisher), then the publication.
        let gone = SubscriptionSpec { present: false, ..subscription };
        let (_, dropped) = on_subscriber.converge(&subscriber.pg, &[], &[gone]).await;
        assert!(dropped[0].applied, "{dropped:?}");
        assert_eq!(count(&target, "SELECT count(*) FROM pg_subscription").await, 0);
        assert_eq!(count(&source, "SELECT count(*) FROM pg_replication_slots").await, 0);
        let gone = PublicationSpec { present: false, ..wider };
        let (dropped, _) = on_publisher.converge(&publisher.pg, &[gone], &[]).await;
        assert!(dropped[0].applied, "{dropped:?}");
        assert_eq!(count(&source, "SELECT count(*) FROM pg_publication").await, 0);
    });
    subscriber.stop();
    publisher.stop();
}

/// Both objects applied at once, each by its own cluster: the subscription may come first. It
/// says so, and catches up once the publication exists.
#[test]
fn a_subscription_created_before_its_publication_catches_up() {
    let publisher = pgherd_testkit::TestServer::start_logical();
    let subscriber = pgherd_testkit::TestServer::start();
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        for server in [&publisher, &subscriber] {
            connect(&server.pg, "postgres")
                .await
                .unwrap()
                .batch_execute(
                    "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)",
                )
                .await
                .unwrap();
        }
        connect(&subscriber.pg, "postgres")
            .await
            .unwrap()
            .batch_execute("TRUNCATE items")
            .await
            .unwrap();
        let subscription = SubscriptionSpec {
            object: "s".into(),
            name: "early".into(),
            dbname: "postgres".into(),
            present: true,
            publication: "late".into(),
            conninfo: format!(
                "host='{}' port='{}' dbname='postgres' user='postgres'",
                publisher.pg.socket_dir.display(),
                publisher.pg.port
            ),
            parameters: BTreeMap::new(),
        };
        let mut on_subscriber = Logical::default();
        let (_, first) = on_subscriber
            .converge(&subscriber.pg, &[], std::slice::from_ref(&subscription))
            .await;
        assert!(!first[0].applied, "{first:?}");
        assert!(
            first[0]
                .message
                .as_deref()
                .unwrap_or("")
                .contains("no tables on the publisher yet"),
            "{first:?}"
        );

        let publication = PublicationSpec {
            object: "p".into(),
            name: "late".into(),
            dbname: "postgres".into(),
            present: true,
            target: PublicationTarget::AllTables,
            parameters: BTreeMap::new(),
        };
        let (published, _) = Logical::default()
            .converge(&publisher.pg, &[publication], &[])
            .await;
        assert!(published[0].applied, "{published:?}");
        let (_, second) = on_subscriber
            .converge(&subscriber.pg, &[], std::slice::from_ref(&subscription))
            .await;
        assert!(second[0].applied, "{second:?}");
        let target = connect(&subscriber.pg, "postgres").await.unwrap();
        wait_for(&target, "SELECT count(*) FROM items", 1).await;
        let gone = SubscriptionSpec {
            present: false,
            ..subscription
        };
        assert!(on_subscriber.converge(&subscriber.pg, &[], &[gone]).await.1[0].applied);
    });
    subscriber.stop();
    publisher.stop();
}

/// A publisher that accepts connections and never answers: the supervisor's pass does not wait
/// for it (the round runs in the background) and the failure is reported once it times out.
#[test]
fn a_silent_publisher_does_not_hold_the_supervisor() {
    use pgherd_instance_manager::logical::BackgroundLogical;
    let subscriber = pgherd_testkit::TestServer::start();
    let rt = pgherd_testkit::runtime();
    rt.block_on(async {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let subscription = SubscriptionSpec {
            object: "s".into(),
            name: "silent".into(),
            dbname: "postgres".into(),
            present: true,
            publication: "p".into(),
            conninfo: format!("host=127.0.0.1 port={port} dbname=postgres connect_timeout=2"),
            parameters: BTreeMap::new(),
        };
        let mut logical = BackgroundLogical::default();
        let started = Instant::now();
        let first = logical.converge(&subscriber.pg, &[], std::slice::from_ref(&subscription));
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(
            first.1.is_empty(),
            "no result before the round ends: {first:?}"
        );
        // The statement timeout (20 s) ends the round: the walreceiver connection ignores
        // connect_timeout.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, results) =
                logical.converge(&subscriber.pg, &[], std::slice::from_ref(&subscription));
            if let Some(r) = results.first() {
                assert!(!r.applied, "{r:?}");
                assert!(
                    r.message
                        .as_deref()
                        .unwrap_or("")
                        .contains("statement timeout"),
                    "cancelled by the server, not left running: {r:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "no result");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(silent);
    });
    subscriber.stop();
}

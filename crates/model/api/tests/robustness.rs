//! Arbitrary bytes and arbitrary YAML into the loader never panic. Bounded: PROPTEST_CASES
//! (scripts/test.sh sets it) decides how many cases run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_api::manifest::{load, validate_all};
use proptest::prelude::*;

fn run(text: &str) {
    let mut docs = load(text);
    let mut refs: Vec<_> = docs.iter_mut().collect();
    validate_all(&mut refs);
}

/// YAML-ish text built from manifest vocabulary, so the generator reaches deep into the schema.
fn yamlish() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "apiVersion: postgresql.cnpg.io/v1",
        "kind: Cluster",
        "kind: Pooler",
        "kind: ScheduledBackup",
        "kind: Database",
        "kind: Backup",
        "apiVersion: barmancloud.cnpg.io/v1",
        "kind: ObjectStore",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        "  name: x",
        "spec:",
        "  instances: 3",
        "  instances: -1",
        "  storage:",
        "    size: 1Gi",
        "  bootstrap:",
        "    recovery:",
        "      source: a",
        "    initdb:",
        "  postgresql:",
        "    parameters:",
        "      wal_level: minimal",
        "    synchronous:",
        "      method: any",
        "      number: 9",
        "  schedule: '0 2 * * 0'",
        "  schedule: '@every 1h'",
        "  cluster:",
        "    name: x",
        "  pgbouncer:",
        "    parameters:",
        "      foo: bar",
        "  externalClusters:",
        "  - name: a",
        "    barmanObjectStore:",
        "      destinationPath: s3://b",
        "---",
        "- 1",
        "? a",
        "&a [*a]",
        "{",
        "}",
        "]",
        "  pg_hba:",
        "    - host all all 0/0 md5",
        "  imageName: postgres:latest",
        "stringData:",
        "  k: v",
        "data:",
        "  k: '%%%'",
    ]);
    prop::collection::vec(words, 0..40).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yaml_never_panics(text in yamlish()) {
        run(&text);
    }

    #[test]
    fn arbitrary_json_values_never_panic(value in arb_json()) {
        run(&value.to_string());
    }

    /// Deep nesting of any shape (flow brackets, braces, block indentation, `- ` runs, mixed)
    /// is refused with the limit's message before the YAML parser sees it, and quickly.
    #[test]
    fn deep_nesting_is_refused_before_parsing(
        depth in 101usize..3000,
        shape in 0u8..4,
        prefix in prop::sample::select(vec!["", "spec:\n  x: ", "a: 1\nb: "]),
    ) {
        let body = match shape {
            0 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            1 => format!("{}{}", "{a: ".repeat(depth), "}".repeat(depth)),
            // (block indentation grows with the square of the depth: kept under the size limit)
            2 => (0..depth.min(1000)).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
            // A run of `- ` entries starts its own line.
            _ => format!("\n{}x", "- ".repeat(depth)),
        };
        let text = format!("{prefix}{body}\n");
        let started = std::time::Instant::now();
        let docs = load(&text);
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(2));
        prop_assert_eq!(docs.len(), 1);
        let message = docs[0].diagnostics.first().map(|d| d.message.clone()).unwrap_or_default();
        prop_assert!(message.contains("nesting deeper than 100"), "{}", message);
    }

    /// Shallow nesting (what real manifests have) is never refused for its depth.
    #[test]
    fn shallow_nesting_is_not_refused(depth in 0usize..40) {
        let text = format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let docs = load(&text);
        prop_assert!(docs.iter().all(|d| d.diagnostics.iter().all(|x| !x.message.contains("nesting"))));
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9 ./:*@-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "apiVersion",
                    "kind",
                    "metadata",
                    "name",
                    "spec",
                    "instances",
                    "storage",
                    "size",
                    "bootstrap",
                    "recovery",
                    "postgresql",
                    "parameters",
                    "cluster",
                    "pgbouncer",
                    "schedule",
                    "x"
                ])
                .prop_map(String::from),
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

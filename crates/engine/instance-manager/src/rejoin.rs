//! A former primary (or a standby whose history diverged) rejoining as a replica: `pg_rewind`
//! onto the new primary's timeline, or, when that is impossible, a new clone with the old data
//! set aside.

use crate::bootstrap::primary_source;
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::InstanceSpec;

/// A replica-to-be whose data was a primary's (no `standby.signal`): rewind it onto the new
/// primary's timeline, or, when that is impossible, clone it again.
pub(crate) async fn rejoin(pg: &Postgres, spec: &InstanceSpec) -> Result<(), InstanceError> {
    let source = primary_source(spec)?;
    let rewound = pg.can_rewind_from(&source).await.and_then(|ready| {
        if !ready {
            return Err(InstanceError::NotYet(
                "waiting for the new primary's first checkpoint since its promotion (pg_rewind cannot see its timeline before)",
            ));
        }
        tracing::info!("rewinding onto the new primary");
        pg.rewind_from(&source)
    });
    match rewound {
        Ok(()) => {
            tracing::info!("rewound");
            Ok(())
        }
        Err(e @ InstanceError::NotYet(_)) => Err(e),
        // The new primary is not reachable yet, or this disk is full: try again later.
        Err(e) if try_rewind_again(&e.to_string()) => Err(e),
        Err(rewind_error) => {
            // Keep the old data (it may hold the only copy of commits that never reached a
            // standby under asynchronous replication): set aside for salvage, never deleted.
            let aside = crate::set_aside::set_aside(&pg.pgdata, "diverged")?;
            tracing::warn!(
                "pg_rewind failed ({rewind_error}); data kept in {}, cloning again",
                aside.display()
            );
            // Its tablespaces' files go aside too: the clone needs their locations empty.
            let aside_too = crate::declarative::Previous::SetAside;
            crate::declarative::prepare_locations(pg, &spec.tablespaces, aside_too);
            pg.clone_from(&source)
        }
    }
}

/// Whether a failed `pg_rewind` may succeed later as it is: the source was unreachable (it
/// is starting, or the network is cut) or this disk is full. Anything else means the data
/// cannot be rewound.
fn try_rewind_again(error: &str) -> bool {
    ["could not connect", "connection to server", "No space left"]
        .iter()
        .any(|m| error.contains(m))
}

#[cfg(test)]
mod rewind_tests {
    #[test]
    fn rewind_is_retried_only_for_passing_troubles() {
        assert!(super::try_rewind_again(
            "pg_rewind: error: connection to server at \"10.1.0.2\", port 5432 failed: No route to host"
        ));
        assert!(super::try_rewind_again(
            "could not write file: No space left on device"
        ));
        assert!(!super::try_rewind_again(
            "pg_rewind: fatal: source and target clusters are from different systems"
        ));
    }
}

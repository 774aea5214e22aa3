//! The token a demoted primary cluster gives (`status.demotionToken`) and its former replica
//! cluster is promoted with (`spec.replica.promotionToken`), in CloudNativePG's shape: base64 of
//! a JSON object of the demoted primary's `pg_control` after its clean shutdown (every value a
//! string). The replica cluster promotes only once it has replayed past that shutdown
//! checkpoint, on the same timeline of the same system: nothing the demoted primary
//! acknowledged is lost, and a stale token (an older demotion, another system) is refused.

use base64::Engine as _;
use pgherd_postgres::Lsn;
use serde::{Deserialize, Serialize};

/// What a demotion token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaToken {
    /// `pg_control`'s system identifier.
    pub system_identifier: u64,
    /// The timeline of the shutdown checkpoint.
    pub timeline: u32,
    /// Its REDO location (a shutdown checkpoint's own start).
    pub redo: Lsn,
    /// The WAL file holding it.
    pub redo_wal_file: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// What issued it.
    pub operator_version: String,
}

/// The JSON, as CloudNativePG writes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(rename = "latestCheckpointTimelineID")]
    latest_checkpoint_timeline_id: String,
    #[serde(rename = "redoWALFile")]
    redo_wal_file: String,
    database_system_identifier: String,
    #[serde(rename = "latestCheckpointREDOLocation")]
    latest_checkpoint_redo_location: String,
    #[serde(default)]
    time_of_latest_checkpoint: String,
    #[serde(default)]
    operator_version: String,
}

impl ReplicaToken {
    /// The token text (base64 of the JSON).
    pub fn encode(&self) -> String {
        let content = Content {
            latest_checkpoint_timeline_id: self.timeline.to_string(),
            redo_wal_file: self.redo_wal_file.clone(),
            database_system_identifier: self.system_identifier.to_string(),
            latest_checkpoint_redo_location: self.redo.to_string(),
            time_of_latest_checkpoint: self.time.clone(),
            operator_version: self.operator_version.clone(),
        };
        let json = serde_json::to_vec(&content).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Read a token; why not, for `spec.replica.promotionToken`'s message.
    pub fn decode(text: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        let content: Content =
            serde_json::from_slice(&bytes).map_err(|e| format!("its JSON {e}"))?;
        Ok(ReplicaToken {
            system_identifier: content
                .database_system_identifier
                .parse()
                .map_err(|_| "databaseSystemIdentifier is not a number".to_string())?,
            timeline: content
                .latest_checkpoint_timeline_id
                .parse()
                .map_err(|_| "latestCheckpointTimelineID is not a number".to_string())?,
            redo: content
                .latest_checkpoint_redo_location
                .parse()
                .map_err(|_| "latestCheckpointREDOLocation is not a WAL location".to_string())?,
            redo_wal_file: content.redo_wal_file,
            time: content.time_of_latest_checkpoint,
            operator_version: content.operator_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_has_cloudnativepgs_keys() {
        let token = ReplicaToken {
            system_identifier: 7_312_345_678_901_234_567,
            timeline: 3,
            redo: Lsn(0x5_0000_0028),
            redo_wal_file: "000000030000000500000000".into(),
            time: "2026-12-07T17:00:00Z".into(),
            operator_version: "pgherd 0.1.0".into(),
        };
        let text = token.encode();
        assert_eq!(ReplicaToken::decode(&text).unwrap(), token);
        let json = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for key in [
            "latestCheckpointTimelineID",
            "redoWALFile",
            "databaseSystemIdentifier",
            "latestCheckpointREDOLocation",
            "timeOfLatestCheckpoint",
            "operatorVersion",
        ] {
            assert!(json[key].is_string(), "{key}: {json}");
        }
        assert_eq!(json["latestCheckpointREDOLocation"], "5/28");
    }

    #[test]
    fn what_is_not_a_token_says_why() {
        assert!(ReplicaToken::decode("%%%").unwrap_err().contains("base64"));
        let not_json = base64::engine::general_purpose::STANDARD.encode("{\"a\":1}");
        assert!(ReplicaToken::decode(&not_json)
            .unwrap_err()
            .contains("its JSON missing field"));
    }
}

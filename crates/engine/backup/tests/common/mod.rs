//! Test harness: a real S3-compatible server (moto, installed by `scripts/install.sh`) started
//! per test on a free loopback port and stopped when the guard drops (also on panic), plus
//! helpers to open stores on it and on a temporary directory.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_backup::store::{self, CloudStore, Destination, S3Keys, StoreConfig};
use std::time::Duration;

pub use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};

/// Stores on a moto server.
pub trait MotoStores {
    fn store(&self, bucket: &str, prefix: &str) -> CloudStore;
    fn config(&self, bucket: &str, prefix: &str) -> StoreConfig;
}

impl MotoStores for Moto {
    /// A store on `s3://bucket/prefix` at this server.
    fn store(&self, bucket: &str, prefix: &str) -> CloudStore {
        store::open(&self.config(bucket, prefix)).expect("open S3 store")
    }

    /// The configuration of that store.
    fn config(&self, bucket: &str, prefix: &str) -> StoreConfig {
        let mut config = config_for_endpoint(&self.endpoint());
        config.destination = Destination::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        config
    }
}

/// A configuration for bucket `store` at any endpoint, with the test keys.
pub fn config_for_endpoint(endpoint: &str) -> StoreConfig {
    let mut config = StoreConfig::new(Destination::S3 {
        bucket: "store".into(),
        prefix: String::new(),
    });
    config.endpoint_url = Some(endpoint.to_string());
    config.region = Some("us-east-1".into());
    config.s3_keys = Some(S3Keys {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
    });
    config.request_timeout = Duration::from_secs(30);
    config
}

/// A store on `file://<dir>`.
pub fn fs_store(dir: &std::path::Path) -> CloudStore {
    store::open(&StoreConfig::new(Destination::File {
        root: dir.to_path_buf(),
    }))
    .expect("open file store")
}

/// 16 MiB of WAL-like content: mostly compressible, some noise, deterministic per `seed`.
pub fn fake_segment(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut data = vec![0u8; 16 * 1024 * 1024];
    for (i, chunk) in data.chunks_mut(8192).enumerate() {
        // A page header-ish prefix of pseudo-random bytes, then zeros, like a real segment.
        for b in chunk.iter_mut().take(64 + (i % 7) * 300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    data
}

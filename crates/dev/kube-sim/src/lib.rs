//! kube-sim's API server: a Kubernetes API server for tests, serving over TLS on loopback the
//! built-in kinds the operator and its users touch and the CRDs installed into it, with the
//! real semantics of discovery, get/list/watch, create/update/patch (merge, JSON, strategic,
//! server-side apply), deletion with finalizers and garbage collection, CRD schemas, tables,
//! bearer tokens, RBAC and admission webhooks (`webhook`). It owns the in-memory object store
//! and everything that gives requests their meaning. [`kubelet`] adds simulated nodes whose
//! pods run as local processes, the controllers around them (scheduler, PVC provisioner, node
//! lifecycle, EndpointSlices, Deployments/ReplicaSets/Jobs), a Service proxy on loopback
//! ClusterIPs, and `pods/log`, `pods/exec` and `pods/binding` through
//! [`server::Subresource`]. [`eviction`] serves `pods/eviction` against PodDisruptionBudgets.
//!
//! Test infrastructure, never shipped. May import model and engine crates (the CRD schema
//! walk from `pgherd-api`, the PKI from `pgherd-controller`); nothing depends on it but tests.
//!
//! Imports: pgherd-api, pgherd-controller.

pub mod admission;
pub mod apply;
pub mod clock;
mod collection;
pub mod convert;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod eviction;
pub mod gc;
pub mod immutable;
pub mod kubelet;
pub mod managed_fields;
pub mod meta_validation;
pub mod patch;
mod protobuf;
pub mod rbac;
pub mod registry;
mod routes;
pub mod scale;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod verbs;
pub mod watch;
pub mod webhook;

pub use error::ApiError;
pub use server::{start, ApiServer, Config, Running};

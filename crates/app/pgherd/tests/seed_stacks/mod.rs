//! What the seeds describe but do not show, written out once for the local and the Kubernetes
//! walks of their runbooks.
#![allow(dead_code)] // each test binary uses a part

pub mod saasodoo;
pub mod shared;
pub mod three_node;

//! The OCI vocabulary every other Berth crate speaks.
//!
//! Design decision: values that arrive from the network are parsed once, at the edge, into newtypes
//! ([`Digest`], [`RepoName`], [`Tag`], [`Reference`]) whose constructors enforce the OCI Distribution
//! grammar. Code that holds one of these types never re-validates it, and storage keys built from them
//! can never contain `..`, `/`-escapes or other traversal tricks.
//!
//! This crate is pure: no tokio, no I/O. It owns the one table that maps OCI error codes to HTTP
//! statuses ([`ErrorCode`]) and the manifest parser ([`manifest::Manifest`]) that extracts what the
//! registry needs (referenced blobs, child manifests, subject, artifact type) from the bytes a client
//! sent, without ever re-serialising them.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod digest;
mod error;
pub mod manifest;
pub mod media;
mod name;
mod quote;
mod upload;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use name::{NameError, Reference, RepoName, Tag};
pub use quote::{quoted, QUOTE_LIMIT};
pub use upload::UploadId;

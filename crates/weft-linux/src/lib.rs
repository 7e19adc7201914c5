//! Linux plumbing for weft: network namespaces, and a small synchronous
//! rtnetlink client for links, addresses and routes.
//!
//! Everything here acts on whatever namespace its handle was opened in; nothing
//! reads Kubernetes objects or decides policy.

mod error;
pub mod netlink;
pub mod netns;
pub mod sysctl;

pub use error::{Error, Result};
pub use netlink::{Handle, Link, Route};
pub use netns::Netns;

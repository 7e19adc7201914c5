use std::io;

/// Errors from namespace and netlink operations. `op` says what was being done
/// (e.g. `create veth veth1a2b3c4d`) so a user sees the object, not just errno.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: kernel answered: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: cannot decode netlink message: {detail}")]
    Decode { op: String, detail: String },
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    /// The errno the kernel (or a syscall) answered, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Netlink { source, .. } => source.raw_os_error(),
            Error::Decode { .. } => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }

    /// The kernel does not know the kind of object asked for (a link kind
    /// whose module is missing: `EOPNOTSUPP`).
    pub fn is_not_supported(&self) -> bool {
        self.errno() == Some(libc_errno::EOPNOTSUPP)
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc_errno::ENODEV) | Some(libc_errno::ENOENT) | Some(libc_errno::ESRCH)
        )
    }
}

/// The few errno values we branch on (avoids a direct libc dependency).
pub(crate) mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EOPNOTSUPP: i32 = 95;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

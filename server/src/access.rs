//! Who may call what: the roles, the role table of every RPC, and bounded labels for RPCs and
//! status codes.
//!
//! A leaf module: configuration, authentication, audit, limits and metrics all read this table,
//! and it imports none of them, so the policy is stated once and every layer agrees on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role name that does not parse, or an empty role list.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("unknown role {0:?} (roles: verify, enroll, search, admin, adjudicator)")]
    Unknown(String),
    #[error("at least one role is required")]
    None,
}

/// What a caller may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// 1:1 verification (a bank counter).
    Verify,
    /// Insert records (an enrollment office).
    Enroll,
    /// 1:N identification against the gallery.
    Search,
    /// Delete records and operate the service.
    Admin,
    /// Review identification hits and decide them (the `abis.v1.Adjudication` service and the
    /// examiner's page).
    Adjudicator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Verify,
        Role::Enroll,
        Role::Search,
        Role::Admin,
        Role::Adjudicator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Verify => "verify",
            Role::Enroll => "enroll",
            Role::Search => "search",
            Role::Admin => "admin",
            Role::Adjudicator => "adjudicator",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Verify => 1,
            Role::Enroll => 2,
            Role::Search => 4,
            Role::Admin => 8,
            Role::Adjudicator => 16,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| RoleError::Unknown(s.to_string()))
    }
}

/// A set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);

    pub fn all() -> Roles {
        Role::ALL.into_iter().collect()
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Parses `"enroll,search"`.
    pub fn parse_list(list: &str) -> Result<Roles, RoleError> {
        let mut roles = Roles::NONE;
        for part in list.split(',').filter(|p| !p.trim().is_empty()) {
            roles.insert(part.parse()?);
        }
        if roles.is_empty() {
            return Err(RoleError::None);
        }
        Ok(roles)
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut roles = Roles::NONE;
        for r in iter {
            roles.insert(r);
        }
        roles
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roles({self})")
    }
}

/// What an RPC requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (health checks, reflection).
    Open,
    /// The caller needs at least one of these roles.
    AnyOf(&'static [Role]),
}

/// Path prefix of the engine's own service.
pub const ABIS_SERVICE_PREFIX: &str = "/abis.v1.Abis/";

/// Path prefix of the adjudication service: every method needs `adjudicator`.
pub const ADJUDICATION_SERVICE_PREFIX: &str = "/abis.v1.Adjudication/";

/// The methods of `abis.v1.Adjudication` (all `adjudicator`).
pub const ADJUDICATION_RPCS: &[&str] = &["ListCases", "GetCase", "DecideCase"];

/// The role table of the `abis.v1.Abis` service, by method name.
///
/// - `Get` returns what is stored under a reference id: enrollment offices (to check their own
///   work) and administrators; never a verify-only bank, never a search-only caller.
/// - `ReferenceCount` and `PendingJobs` reveal only counts: any role but `verify`, so a bank
///   key learns nothing about the gallery.
/// - `Extract` turns an image into a template, needed before verification and enrollment.
/// - `VerifyDocument` is the bank counter's 1:1 against a chip ID card: `verify`, like `Verify`.
/// - `Backup` copies the whole gallery: administrators only.
/// - The N:N deduplication job reads the whole gallery and reports identities: administrators.
pub const RPC_ACCESS: &[(&str, Access)] = &[
    ("Insert", Access::AnyOf(&[Role::Enroll])),
    ("InsertStream", Access::AnyOf(&[Role::Enroll])),
    ("Identify", Access::AnyOf(&[Role::Search])),
    ("IdentifyBatch", Access::AnyOf(&[Role::Search])),
    ("Verify", Access::AnyOf(&[Role::Verify])),
    ("Delete", Access::AnyOf(&[Role::Admin])),
    ("Get", Access::AnyOf(&[Role::Enroll, Role::Admin])),
    (
        "ReferenceCount",
        Access::AnyOf(&[Role::Enroll, Role::Search, Role::Admin]),
    ),
    (
        "PendingJobs",
        Access::AnyOf(&[Role::Enroll, Role::Search, Role::Admin]),
    ),
    ("Extract", Access::AnyOf(&[Role::Verify, Role::Enroll])),
    ("VerifyDocument", Access::AnyOf(&[Role::Verify])),
    ("Backup", Access::AnyOf(&[Role::Admin])),
    ("StartDeduplication", Access::AnyOf(&[Role::Admin])),
    ("GetDeduplication", Access::AnyOf(&[Role::Admin])),
    ("ListDuplicates", Access::AnyOf(&[Role::Admin])),
    ("CancelDeduplication", Access::AnyOf(&[Role::Admin])),
];

const OPEN_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The access rule for a gRPC method path such as `/abis.v1.Abis/Identify`.
///
/// Health and reflection are open; a method of the engine's service not in [`RPC_ACCESS`], and
/// any other path, needs `admin` (fail closed).
pub fn required_access(path: &str) -> Access {
    if OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Access::Open;
    }
    if let Some(method) = path.strip_prefix(ABIS_SERVICE_PREFIX) {
        if let Some((_, access)) = RPC_ACCESS.iter().find(|(m, _)| *m == method) {
            return *access;
        }
    }
    if let Some(method) = path.strip_prefix(ADJUDICATION_SERVICE_PREFIX) {
        if ADJUDICATION_RPCS.contains(&method) {
            return Access::AnyOf(&[Role::Adjudicator]);
        }
    }
    Access::AnyOf(&[Role::Admin])
}

/// A bounded label for a method path (for metrics, limits and logs): the method name for the
/// engine's RPCs (`Identify`), `health` / `reflection` for those services, else `unknown`.
/// Never echoes client-chosen text, so label cardinality stays fixed.
pub fn rpc_label(path: &str) -> &'static str {
    if let Some(method) = path.strip_prefix(ABIS_SERVICE_PREFIX) {
        if let Some((m, _)) = RPC_ACCESS.iter().find(|(m, _)| *m == method) {
            return m;
        }
        return "unknown";
    }
    if let Some(method) = path.strip_prefix(ADJUDICATION_SERVICE_PREFIX) {
        return ADJUDICATION_RPCS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("unknown");
    }
    if path.starts_with("/grpc.health.v1.Health/") {
        return "health";
    }
    if path.starts_with("/grpc.reflection.") {
        return "reflection";
    }
    "unknown"
}

/// The canonical gRPC code names.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RPC of the proto has an explicit rule (an RPC missing here would be admin-only).
    #[test]
    fn every_proto_rpc_is_in_the_role_table() {
        let proto = include_str!("../../proto/proto/abis/v1/abis.proto");
        let rpcs: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .map(str::trim)
            .collect();
        assert!(rpcs.len() >= 9, "{rpcs:?}");
        for rpc in rpcs {
            assert!(
                RPC_ACCESS.iter().any(|(m, _)| *m == rpc),
                "rpc {rpc} has no entry in access::RPC_ACCESS"
            );
        }
    }

    #[test]
    fn every_adjudication_rpc_needs_the_adjudicator_role() {
        let proto = include_str!("../../proto/proto/abis/v1/adjudication.proto");
        let rpcs: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .collect();
        assert_eq!(rpcs, ADJUDICATION_RPCS);
        for rpc in rpcs {
            let path = format!("{ADJUDICATION_SERVICE_PREFIX}{rpc}");
            assert_eq!(required_access(&path), Access::AnyOf(&[Role::Adjudicator]));
            assert_eq!(rpc_label(&path), rpc);
        }
        assert_eq!(rpc_label("/abis.v1.Adjudication/Other"), "unknown");
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(rpc_label("/abis.v1.Abis/Identify"), "Identify");
        assert_eq!(
            rpc_label("/abis.v1.Abis/whatever-attacker-sends"),
            "unknown"
        );
        assert_eq!(rpc_label("/grpc.health.v1.Health/Watch"), "health");
        assert_eq!(rpc_label("/x"), "unknown");
    }
}

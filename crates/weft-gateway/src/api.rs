//! The Gateway API kinds weft serves, as Rust types: weft's own, written from
//! the specification's field list and matching the CRDs in
//! `deploy/gateway-api/` field for field (a test walks every CRD schema).
//!
//! The types only carry data. Enum-like fields (protocols, match types,
//! filter types, TLS modes) are plain `String`s, because the table compiler
//! must see a value it does not support to report it in status rather than
//! fail to read the object. Fields the CRD defaults are `Option`s with an
//! `*_or_default` accessor here, so an object built in a test or read from a
//! server that did not default it means the same thing.
//!
//! Reading is lenient: every field may be absent, unknown fields are
//! ignored, and a `status` that does not parse (another writer's condition
//! without `lastTransitionTime`, say) reads as no status instead of making
//! the object — and with it the whole list a watcher receives — unreadable.
//! Writing gives `apiVersion` and `kind` first, as k8s-openapi's types do, and
//! leaves out absent options and empty spec lists (status lists are always
//! written, so a status patch can empty them).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use k8s_openapi::{ClusterResourceScope as Cluster, NamespaceResourceScope as Namespaced};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The `spec.controllerName` a GatewayClass carries to be served by weft.
pub const CONTROLLER_NAME: &str = "weft.dev/gateway";

/// The core API group (Services, Secrets, ConfigMaps), as references spell it.
pub const CORE_GROUP: &str = "";

// ---------------------------------------------------------------------------
// The kinds

/// A kind of Gateway, handled by the controller it names (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct GatewayClass {
    pub metadata: ObjectMeta,
    pub spec: GatewayClassSpec,
    #[serde(deserialize_with = "status_or_none")]
    pub status: Option<GatewayClassStatus>,
}

/// Listeners (ports, protocols, hostnames, TLS) that routes attach to.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Gateway {
    pub metadata: ObjectMeta,
    pub spec: GatewaySpec,
    #[serde(deserialize_with = "status_or_none")]
    pub status: Option<GatewayStatus>,
}

/// HTTP requests matched by host, path, headers, query and method, filtered,
/// then sent to weighted backends.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HTTPRoute {
    pub metadata: ObjectMeta,
    pub spec: HTTPRouteSpec,
    #[serde(deserialize_with = "status_or_none")]
    pub status: Option<RouteStatus>,
}

/// TLS connections routed by SNI to backends (v1alpha2, as weft's CRD serves it).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TLSRoute {
    pub metadata: ObjectMeta,
    pub spec: TLSRouteSpec,
    #[serde(deserialize_with = "status_or_none")]
    pub status: Option<RouteStatus>,
}

/// Lets objects of other namespaces refer to objects in this one. The kind
/// has no status.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReferenceGrant {
    pub metadata: ObjectMeta,
    pub spec: ReferenceGrantSpec,
}

/// How a Gateway connects to a backend Service over TLS (re-encryption):
/// the SNI to send and how to validate the backend's certificate.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BackendTLSPolicy {
    pub metadata: ObjectMeta,
    pub spec: BackendTLSPolicySpec,
    #[serde(deserialize_with = "status_or_none")]
    pub status: Option<PolicyStatus>,
}

/// A status we cannot read is no status: the compiler reads specs, and the
/// status it writes replaces whatever was there.
fn status_or_none<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let Some(raw) = Option::<serde_json::Value>::deserialize(de)? else {
        return Ok(None);
    };
    match serde_json::from_value(raw) {
        Ok(status) => Ok(Some(status)),
        Err(e) => {
            tracing::debug!(error = %e, "unreadable status read as none");
            Ok(None)
        }
    }
}

/// The serialized form of every kind: k8s-openapi's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a, Spec, Status> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a Spec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
}

/// `k8s_openapi::{Resource, ListableResource, Metadata}` (which give
/// `kube::Resource<DynamicType = ()>`) and `Serialize` for one kind.
macro_rules! resource {
    ($ty:ident, $version:literal, $plural:literal, $scope:ty $(, status: $status:ty)?) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = concat!("gateway.networking.k8s.io/", $version);
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = stringify!($ty);
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = concat!(stringify!($ty), "List");
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                Wire {
                    api_version: <Self as k8s_openapi::Resource>::API_VERSION,
                    kind: <Self as k8s_openapi::Resource>::KIND,
                    metadata: &self.metadata,
                    spec: &self.spec,
                    status: resource!(@status self $($status)?),
                }
                .serialize(ser)
            }
        }
    };
    (@status $obj:ident) => {
        None::<&()>
    };
    (@status $obj:ident $status:ty) => {
        $obj.status.as_ref()
    };
}

resource!(GatewayClass, "v1", "gatewayclasses", Cluster, status: GatewayClassStatus);
resource!(Gateway, "v1", "gateways", Namespaced, status: GatewayStatus);
resource!(HTTPRoute, "v1", "httproutes", Namespaced, status: RouteStatus);
resource!(TLSRoute, "v1alpha2", "tlsroutes", Namespaced, status: RouteStatus);
resource!(ReferenceGrant, "v1beta1", "referencegrants", Namespaced);
resource!(BackendTLSPolicy, "v1", "backendtlspolicies", Namespaced, status: PolicyStatus);

// ---------------------------------------------------------------------------
// GatewayClass

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that manages Gateways of this class; weft serves
    /// classes whose value is [`CONTROLLER_NAME`]. Immutable.
    pub controller_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Implementation-specific parameters; weft takes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ParametersReference>,
}

/// A reference to a class's parameters object (namespace only for
/// namespaced kinds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ParametersReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// `Accepted` (and `SupportedVersion`).
    pub conditions: Vec<Condition>,
    /// The features the controller implements for this class.
    pub supported_features: Vec<SupportedFeature>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SupportedFeature {
    pub name: String,
}

// ---------------------------------------------------------------------------
// Gateway

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    /// Unique by name; no two share port, protocol and hostname.
    pub listeners: Vec<Listener>,
    /// Addresses asked for; the implementation may assign others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewaySpecAddress>,
    /// Labels and annotations for the resources an implementation creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewaySpecAddress {
    /// "IPAddress" (default) or "Hostname".
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub value: String,
}

impl GatewaySpecAddress {
    pub fn type_or_default(&self) -> &str {
        self.type_.as_deref().unwrap_or("IPAddress")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; what `sectionName` of a parentRef names.
    pub name: String,
    /// Only requests (or SNI) for this host; a leading `*.` matches one or
    /// more labels. Absent: every host. TCP and UDP listeners take none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub port: i32,
    /// "HTTP", "HTTPS", "TLS", "TCP" or "UDP".
    pub protocol: String,
    /// Required for HTTPS and TLS, forbidden otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTLSConfig>,
    /// Absent: routes of the Gateway's namespace, of the kinds the protocol
    /// takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

impl Listener {
    /// `allowedRoutes.namespaces.from` with the defaults applied ("Same").
    pub fn namespaces_from(&self) -> &str {
        self.allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .map_or("Same", RouteNamespaces::from_or_default)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayTLSConfig {
    /// "Terminate" (default) or "Passthrough".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Terminate: the certificates (kubernetes.io/tls Secrets), at least one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Implementation-specific TLS settings (domain-prefixed keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl GatewayTLSConfig {
    pub fn mode_or_default(&self) -> &str {
        self.mode.as_deref().unwrap_or("Terminate")
    }
}

/// A reference to a Secret (by default) in the referrer's namespace unless
/// `namespace` says otherwise (then a ReferenceGrant there must allow it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretObjectReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl SecretObjectReference {
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(CORE_GROUP)
    }
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or("Secret")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Absent: `from: Same`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Empty: the kinds the listener's protocol takes (HTTPRoute for HTTP
    /// and HTTPS, TLSRoute for TLS).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// "Same" (default), "All" or "Selector".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `from: Selector`: the labels of the namespaces allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl RouteNamespaces {
    pub fn from_or_default(&self) -> &str {
        self.from.as_deref().unwrap_or("Same")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Absent: the Gateway API group (status writes it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
}

impl RouteGroupKind {
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(GROUP)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Where the Gateway can be reached.
    pub addresses: Vec<GatewayStatusAddress>,
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    /// "IPAddress" (default) or "Hostname".
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub value: String,
}

impl GatewayStatusAddress {
    pub fn type_or_default(&self) -> &str {
        self.type_.as_deref().unwrap_or("IPAddress")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    /// The route kinds this listener takes (invalid ones left out).
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes accepted by this listener.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------
// Shared by routes

/// A route's reference to what it attaches to: a Gateway (by default), or
/// one of its listeners (`section_name`) or ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Absent: the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// For a Gateway: a listener name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// For a Gateway: only listeners on this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

impl ParentReference {
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(GROUP)
    }
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or("Gateway")
    }
}

/// A route's (or policy's) status, one entry per parent and controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    /// Who wrote this entry; weft writes and removes only its own
    /// ([`CONTROLLER_NAME`]).
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// A backend: a Service port (by default) in the route's namespace unless
/// `namespace` says otherwise (then a ReferenceGrant there must allow it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port (not the target port); required for Services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Share of the rule's traffic, relative to its siblings (default 1;
    /// 0 sends nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// A backend of an HTTPRoute rule: a [`BackendRef`] with its own filters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPBackendRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Applied only to requests sent to this backend.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HTTPRouteFilter>,
}

macro_rules! backend_defaults {
    ($ty:ident) => {
        impl $ty {
            pub fn group_or_default(&self) -> &str {
                self.group.as_deref().unwrap_or(CORE_GROUP)
            }
            pub fn kind_or_default(&self) -> &str {
                self.kind.as_deref().unwrap_or("Service")
            }
            pub fn weight_or_default(&self) -> i32 {
                self.weight.unwrap_or(1)
            }
        }
    };
}
backend_defaults!(BackendRef);
backend_defaults!(HTTPBackendRef);

// ---------------------------------------------------------------------------
// HTTPRoute

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Empty: the listener's hostname (or every host).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Empty: one rule matching every request (the CRD's default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HTTPRouteRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any one match selects the rule; empty: `path: PathPrefix /`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HTTPRouteMatch>,
    /// Applied in order to every request the rule takes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HTTPRouteFilter>,
    /// Empty (and no redirect filter): the request gets a 500.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HTTPRouteTimeouts>,
}

/// All the conditions given must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    /// Absent: `PathPrefix /`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HTTPHeaderMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HTTPQueryParamMatch>,
    /// "GET", "POST", …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPPathMatch {
    /// "Exact", "PathPrefix" (default) or "RegularExpression".
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Default "/".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl HTTPPathMatch {
    pub fn type_or_default(&self) -> &str {
        self.type_.as_deref().unwrap_or("PathPrefix")
    }
    pub fn value_or_default(&self) -> &str {
        self.value.as_deref().unwrap_or("/")
    }
}

/// A header that must be present with a value (names compare
/// case-insensitively).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPHeaderMatch {
    /// "Exact" (default) or "RegularExpression".
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

/// A query parameter that must be present with a value (names compare
/// exactly).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPQueryParamMatch {
    /// "Exact" (default) or "RegularExpression".
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

impl HTTPHeaderMatch {
    pub fn type_or_default(&self) -> &str {
        self.type_.as_deref().unwrap_or("Exact")
    }
}

impl HTTPQueryParamMatch {
    pub fn type_or_default(&self) -> &str {
        self.type_.as_deref().unwrap_or("Exact")
    }
}

/// One filter; `type_` says which of the other fields is set (exactly that
/// one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteFilter {
    /// "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
    /// "RequestRedirect", "URLRewrite" or "ExtensionRef".
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HTTPHeaderFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HTTPHeaderFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HTTPRequestRedirectFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<HTTPURLRewriteFilter>,
    /// Kept as given (`backendRef`, `percent`); weft does not mirror.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<serde_json::Value>,
    /// Kept as given (`group`, `kind`, `name`); weft has no extensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPHeaderFilter {
    /// Replace (or add) these headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HTTPHeader>,
    /// Append these values to the headers (adding them if absent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HTTPHeader>,
    /// Remove these headers (case-insensitive names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPHeader {
    pub name: String,
    pub value: String,
}

/// Answer with a redirect; absent fields keep the request's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRequestRedirectFilter {
    /// "http" or "https".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,
    /// Absent: the listener's port if the scheme is unchanged, else the
    /// scheme's well-known port (80, 443).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// 301 or 302 (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
}

impl HTTPRequestRedirectFilter {
    pub fn status_code_or_default(&self) -> i32 {
        self.status_code.unwrap_or(302)
    }
}

/// Rewrite the request before it goes to the backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPURLRewriteFilter {
    /// Replaces the Host header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPPathModifier {
    /// "ReplaceFullPath" or "ReplacePrefixMatch" (the latter only with a
    /// PathPrefix match).
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// Durations in Gateway API form (`1h2m3s4ms`, each unit at most once).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteTimeouts {
    /// From the request's start to the response's end, retries included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// One request to a backend; at most `request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

// ---------------------------------------------------------------------------
// TLSRoute

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TLSRouteSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// SNI names; empty: the listener's hostname (or every name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<TLSRouteRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TLSRouteRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backend_refs: Vec<BackendRef>,
}

// ---------------------------------------------------------------------------
// ReferenceGrant

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to, in the grant's namespace.
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// "" for the core group.
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// "" for the core group.
    pub group: String,
    pub kind: String,
    /// Absent: every object of the kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

// ---------------------------------------------------------------------------
// BackendTLSPolicy

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTLSPolicySpec {
    /// The Services (or their ports, by `section_name`) in the policy's
    /// namespace that take TLS.
    pub target_refs: Vec<LocalPolicyTargetReferenceWithSectionName>,
    pub validation: BackendTLSPolicyValidation,
    /// Implementation-specific TLS settings (domain-prefixed keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalPolicyTargetReferenceWithSectionName {
    /// "" for Services.
    pub group: String,
    pub kind: String,
    pub name: String,
    /// For a Service: a port name. Absent: every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Exactly one of `ca_certificate_refs` and `well_known_ca_certificates`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTLSPolicyValidation {
    /// CA bundles (a ConfigMap's `ca.crt` is the core case), in the
    /// policy's namespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// "System": the system's trust roots.
    #[serde(
        rename = "wellKnownCACertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub well_known_ca_certificates: Option<String>,
    /// The SNI sent, and the name the certificate must carry unless
    /// `subject_alt_names` is given.
    pub hostname: String,
    /// When given: the certificate must carry one of these (and `hostname`
    /// is no longer checked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubjectAltName {
    /// "Hostname" or "URI"; the field of that name is set.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// An object in the referrer's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// "" (or absent) for the core group.
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// A policy's status, one entry per ancestor (for BackendTLSPolicy: each
/// Gateway whose routes use the targeted Service) and controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyStatus {
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: ParentReference,
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope, Resource};
    use serde_json::{json, Value};
    use std::any::TypeId;

    const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: weft
spec:
  controllerName: weft.dev/gateway
  description: weft's own gateway
status:
  conditions:
  - type: Accepted
    status: "True"
    reason: Accepted
    message: served by weft
    lastTransitionTime: "2025-01-01T00:00:00Z"
    observedGeneration: 1
  supportedFeatures:
  - name: HTTPRoute
"#;

    const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: infra
spec:
  gatewayClassName: weft
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: All
  - name: https
    hostname: "*.example.com"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - name: wildcard-example-com
      - group: ""
        kind: Secret
        name: legacy-cert
        namespace: certs
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            gateway-access: "true"
      kinds:
      - kind: HTTPRoute
  - name: tls
    port: 8443
    protocol: TLS
    tls:
      mode: Passthrough
"#;

    const HTTP_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: shop
spec:
  parentRefs:
  - name: web
    namespace: infra
    sectionName: https
  hostnames: [shop.example.com]
  rules:
  - name: api
    matches:
    - path:
        type: PathPrefix
        value: /api
      headers:
      - name: x-canary
        value: "true"
      - type: RegularExpression
        name: user-agent
        value: .*Mobile.*
      queryParams:
      - name: version
        value: "2"
      method: GET
    - path:
        type: Exact
        value: /api/health
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-shop
          value: api
        add:
        - name: x-via
          value: weft
        remove: [x-debug]
    backendRefs:
    - name: api-v1
      port: 8080
      weight: 90
    - name: api-v2
      port: 8080
      weight: 10
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          add:
          - name: x-version
            value: "2"
    timeouts:
      request: 10s
      backendRequest: 2s
  - matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: new.example.com
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /new
        statusCode: 301
  - matches:
    - headers:
      - name: x-static
        value: "yes"
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: cdn.internal
        path: {type: ReplaceFullPath, replaceFullPath: /index.html}
    backendRefs:
    - name: static
      namespace: cdn
      port: 80
status:
  parents:
  - parentRef:
      group: gateway.networking.k8s.io
      kind: Gateway
      namespace: infra
      name: web
      sectionName: https
    controllerName: weft.dev/gateway
    conditions:
    - type: Accepted
      status: "True"
      reason: Accepted
      message: ""
      lastTransitionTime: "2025-01-01T00:00:00Z"
"#;

    const TLS_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: db
  namespace: data
spec:
  parentRefs:
  - name: web
    namespace: infra
    sectionName: tls
    port: 8443
  hostnames: [db.example.com]
  rules:
  - name: postgres
    backendRefs:
    - name: postgres
      port: 5432
    - name: postgres-replica
      port: 5432
      weight: 0
"#;

    const REFERENCE_GRANT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: allow-infra-gateways
  namespace: certs
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: Gateway
    namespace: infra
  to:
  - group: ""
    kind: Secret
    name: legacy-cert
  - group: ""
    kind: Service
"#;

    const BACKEND_TLS_POLICY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata:
  name: api-tls
  namespace: shop
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: api-v1
    sectionName: https
  validation:
    caCertificateRefs:
    - group: ""
      kind: ConfigMap
      name: api-ca
    hostname: api.shop.svc
    subjectAltNames:
    - type: Hostname
      hostname: api.shop.svc.cluster.local
    - type: URI
      uri: spiffe://cluster.local/ns/shop/sa/api
  options:
    example.com/min-version: "1.3"
status:
  ancestors:
  - ancestorRef:
      name: web
      namespace: infra
    controllerName: weft.dev/gateway
    conditions:
    - type: Accepted
      status: "True"
      reason: Accepted
      message: ""
      lastTransitionTime: "2025-01-01T00:00:00Z"
"#;

    fn crd_text(file: &str) -> &'static str {
        match file {
            "gatewayclass.yaml" => include_str!("../../../deploy/gateway-api/gatewayclass.yaml"),
            "gateway.yaml" => include_str!("../../../deploy/gateway-api/gateway.yaml"),
            "httproute.yaml" => include_str!("../../../deploy/gateway-api/httproute.yaml"),
            "tlsroute.yaml" => include_str!("../../../deploy/gateway-api/tlsroute.yaml"),
            "referencegrant.yaml" => {
                include_str!("../../../deploy/gateway-api/referencegrant.yaml")
            }
            "backendtlspolicy.yaml" => {
                include_str!("../../../deploy/gateway-api/backendtlspolicy.yaml")
            }
            other => panic!("no CRD file {other}"),
        }
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    /// The served storage version's schema of a CRD.
    fn storage_schema(crd: &Value) -> &Value {
        let versions = crd["spec"]["versions"].as_array().unwrap();
        let storage: Vec<_> = versions.iter().filter(|v| v["storage"] == true).collect();
        assert_eq!(storage.len(), 1, "one storage version");
        &storage[0]["schema"]["openAPIV3Schema"]
    }

    /// The fixture reads, and writes back as the same document: apiVersion
    /// and kind included, nothing added or lost.
    fn round_trip<K>(text: &str) -> K
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let obj: K = serde_yaml::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_value(&obj).unwrap(),
            yaml(text),
            "{}",
            K::KIND
        );
        obj
    }

    #[test]
    fn gateway_class_reads_and_round_trips() {
        let gc: GatewayClass = round_trip(GATEWAY_CLASS);
        assert_eq!(gc.spec.controller_name, CONTROLLER_NAME);
        let status = gc.status.unwrap();
        assert_eq!(status.conditions[0].type_, "Accepted");
        assert_eq!(status.conditions[0].observed_generation, Some(1));
    }

    #[test]
    fn gateway_reads_listeners_tls_and_allowed_routes() {
        let gw: Gateway = round_trip(GATEWAY);
        assert_eq!(gw.metadata.namespace.as_deref(), Some("infra"));
        assert_eq!(gw.spec.gateway_class_name, "weft");
        let [http, https, tls] = &gw.spec.listeners[..] else {
            panic!("three listeners")
        };
        assert_eq!((http.port, http.protocol.as_str()), (80, "HTTP"));
        assert!(http.tls.is_none() && http.hostname.is_none());
        assert_eq!(http.namespaces_from(), "All");

        assert_eq!(https.hostname.as_deref(), Some("*.example.com"));
        let t = https.tls.as_ref().unwrap();
        assert_eq!(t.mode_or_default(), "Terminate");
        let [plain, legacy] = &t.certificate_refs[..] else {
            panic!("two certificateRefs")
        };
        assert_eq!(plain.name, "wildcard-example-com");
        assert_eq!(
            (plain.group_or_default(), plain.kind_or_default()),
            ("", "Secret")
        );
        assert_eq!(plain.namespace, None);
        assert_eq!(legacy.namespace.as_deref(), Some("certs"));
        assert_eq!(https.namespaces_from(), "Selector");
        let allowed = https.allowed_routes.as_ref().unwrap();
        let selector = allowed
            .namespaces
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap();
        assert_eq!(
            selector.match_labels.as_ref().unwrap()["gateway-access"],
            "true"
        );
        assert_eq!(allowed.kinds[0].group_or_default(), GROUP);
        assert_eq!(allowed.kinds[0].kind, "HTTPRoute");

        assert_eq!(tls.tls.as_ref().unwrap().mode_or_default(), "Passthrough");
        assert!(tls.tls.as_ref().unwrap().certificate_refs.is_empty());
        assert_eq!(tls.namespaces_from(), "Same");
        assert!(gw.status.is_none());
    }

    #[test]
    fn http_route_reads_matches_filters_and_weighted_backends() {
        let route: HTTPRoute = round_trip(HTTP_ROUTE);
        let parent = &route.spec.parent_refs[0];
        assert_eq!(
            (parent.group_or_default(), parent.kind_or_default()),
            (GROUP, "Gateway")
        );
        assert_eq!(parent.section_name.as_deref(), Some("https"));
        assert_eq!(route.spec.hostnames, ["shop.example.com"]);

        let [api, old, static_] = &route.spec.rules[..] else {
            panic!("three rules")
        };
        assert_eq!(api.name.as_deref(), Some("api"));
        let m = &api.matches[0];
        let path = m.path.as_ref().unwrap();
        assert_eq!(
            (path.type_or_default(), path.value_or_default()),
            ("PathPrefix", "/api")
        );
        assert_eq!(m.headers[0].type_or_default(), "Exact");
        assert_eq!(m.headers[1].type_or_default(), "RegularExpression");
        assert_eq!(m.headers[1].value, ".*Mobile.*");
        assert_eq!(m.query_params[0].name, "version");
        assert_eq!(m.query_params[0].type_or_default(), "Exact");
        assert_eq!(m.method.as_deref(), Some("GET"));
        assert_eq!(
            api.matches[1].path.as_ref().unwrap().type_or_default(),
            "Exact"
        );

        let f = &api.filters[0];
        assert_eq!(f.type_, "RequestHeaderModifier");
        let modifier = f.request_header_modifier.as_ref().unwrap();
        assert_eq!(
            modifier.set[0],
            HTTPHeader {
                name: "x-shop".into(),
                value: "api".into()
            }
        );
        assert_eq!(modifier.add[0].name, "x-via");
        assert_eq!(modifier.remove, ["x-debug"]);

        let weights: Vec<_> = api
            .backend_refs
            .iter()
            .map(|b| b.weight_or_default())
            .collect();
        assert_eq!(weights, [90, 10]);
        let v1 = &api.backend_refs[0];
        assert_eq!(
            (v1.group_or_default(), v1.kind_or_default()),
            ("", "Service")
        );
        assert_eq!(v1.port, Some(8080));
        let v2_filter = &api.backend_refs[1].filters[0];
        assert_eq!(
            v2_filter.response_header_modifier.as_ref().unwrap().add[0].name,
            "x-version"
        );
        let timeouts = api.timeouts.as_ref().unwrap();
        assert_eq!(timeouts.request.as_deref(), Some("10s"));
        assert_eq!(timeouts.backend_request.as_deref(), Some("2s"));

        let redirect = old.filters[0].request_redirect.as_ref().unwrap();
        assert_eq!(redirect.scheme.as_deref(), Some("https"));
        assert_eq!(redirect.status_code_or_default(), 301);
        assert_eq!(redirect.port, None);
        let p = redirect.path.as_ref().unwrap();
        assert_eq!(p.type_, "ReplacePrefixMatch");
        assert_eq!(p.replace_prefix_match.as_deref(), Some("/new"));
        assert!(old.backend_refs.is_empty());

        // A match without a path matches the default path.
        assert_eq!(static_.matches[0].path, None);
        let rewrite = static_.filters[0].url_rewrite.as_ref().unwrap();
        assert_eq!(rewrite.hostname.as_deref(), Some("cdn.internal"));
        assert_eq!(
            rewrite.path.as_ref().unwrap().replace_full_path.as_deref(),
            Some("/index.html")
        );
        assert_eq!(static_.backend_refs[0].namespace.as_deref(), Some("cdn"));
        assert_eq!(static_.backend_refs[0].weight_or_default(), 1);

        let status = route.status.unwrap();
        assert_eq!(status.parents[0].controller_name, CONTROLLER_NAME);
        assert_eq!(
            status.parents[0].parent_ref.kind.as_deref(),
            Some("Gateway")
        );
    }

    #[test]
    fn tls_route_reads() {
        let route: TLSRoute = round_trip(TLS_ROUTE);
        assert_eq!(route.spec.parent_refs[0].port, Some(8443));
        assert_eq!(route.spec.hostnames, ["db.example.com"]);
        let rule = &route.spec.rules[0];
        assert_eq!(rule.name.as_deref(), Some("postgres"));
        let weights: Vec<_> = rule
            .backend_refs
            .iter()
            .map(|b| b.weight_or_default())
            .collect();
        assert_eq!(weights, [1, 0]);
        assert_eq!(rule.backend_refs[0].kind_or_default(), "Service");
    }

    #[test]
    fn reference_grant_reads() {
        let grant: ReferenceGrant = round_trip(REFERENCE_GRANT);
        assert_eq!(
            grant.spec.from,
            [ReferenceGrantFrom {
                group: GROUP.into(),
                kind: "Gateway".into(),
                namespace: "infra".into()
            }]
        );
        assert_eq!(grant.spec.to[0].name.as_deref(), Some("legacy-cert"));
        assert_eq!(grant.spec.to[1].name, None);
    }

    #[test]
    fn backend_tls_policy_reads() {
        let policy: BackendTLSPolicy = round_trip(BACKEND_TLS_POLICY);
        let target = &policy.spec.target_refs[0];
        assert_eq!(
            (target.group.as_str(), target.kind.as_str()),
            ("", "Service")
        );
        assert_eq!(target.section_name.as_deref(), Some("https"));
        let v = &policy.spec.validation;
        assert_eq!(v.hostname, "api.shop.svc");
        assert_eq!(v.ca_certificate_refs[0].kind, "ConfigMap");
        assert_eq!(v.well_known_ca_certificates, None);
        assert_eq!(v.subject_alt_names[1].type_, "URI");
        assert_eq!(
            v.subject_alt_names[1].uri.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/api")
        );
        assert_eq!(policy.spec.options["example.com/min-version"], "1.3");
        let ancestor = &policy.status.unwrap().ancestors[0];
        assert_eq!(ancestor.ancestor_ref.kind_or_default(), "Gateway");

        let system: BackendTLSPolicy = serde_json::from_value(json!({
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
                "validation": {"wellKnownCACertificates": "System", "hostname": "api.example.com"}
            }
        }))
        .unwrap();
        assert_eq!(
            system.spec.validation.well_known_ca_certificates.as_deref(),
            Some("System")
        );
    }

    #[test]
    fn partial_objects_read_and_unknown_fields_are_ignored() {
        let gw: Gateway = serde_json::from_value(json!({
            "spec": {"listeners": [{"name": "a", "port": 80, "protocol": "HTTP", "future": 1}]},
            "somethingNew": {}
        }))
        .unwrap();
        assert_eq!(gw.spec.listeners[0].name, "a");
        assert_eq!(gw.spec.gateway_class_name, "");
        let route: HTTPRoute = serde_json::from_value(json!({"metadata": {"name": "r"}})).unwrap();
        assert!(route.spec.rules.is_empty() && route.status.is_none());
    }

    /// A status another writer left in a shape we cannot read (a condition
    /// without lastTransitionTime: the CRD allows it, k8s-openapi's
    /// Condition does not) must not make the object unreadable.
    #[test]
    fn an_unreadable_status_reads_as_none() {
        let route: HTTPRoute = serde_json::from_value(json!({
            "spec": {"hostnames": ["a.example.com"]},
            "status": {"parents": [{
                "parentRef": {"name": "web"},
                "controllerName": "other.example/gw",
                "conditions": [{"type": "Accepted", "status": "True"}]
            }]}
        }))
        .unwrap();
        assert_eq!(route.spec.hostnames, ["a.example.com"]);
        assert_eq!(route.status, None);
    }

    #[test]
    fn serialization_leads_with_api_version_and_kind_and_writes_empty_status_lists() {
        let mut gw = Gateway::default();
        gw.metadata.name = Some("web".into());
        gw.status = Some(GatewayStatus::default());
        let text = serde_json::to_string(&gw).unwrap();
        assert!(
            text.starts_with(r#"{"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","#),
            "{text}"
        );
        assert_eq!(
            serde_json::to_value(&gw).unwrap()["status"],
            json!({"addresses": [], "conditions": [], "listeners": []})
        );
        let grant = serde_json::to_value(ReferenceGrant::default()).unwrap();
        assert_eq!(grant["kind"], "ReferenceGrant");
        assert!(grant.get("status").is_none());
    }

    #[test]
    fn kube_sees_the_kinds_as_resources() {
        use kube::{Resource as _, ResourceExt as _};
        fn plural<K: kube::Resource<DynamicType = ()>>() -> String {
            K::plural(&()).into_owned()
        }
        assert_eq!(plural::<BackendTLSPolicy>(), "backendtlspolicies");
        assert_eq!(Gateway::api_version(&()), "gateway.networking.k8s.io/v1");
        assert_eq!(
            HTTPRoute::url_path(&(), Some("shop")),
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes"
        );
        assert_eq!(
            GatewayClass::url_path(&(), None),
            "/apis/gateway.networking.k8s.io/v1/gatewayclasses"
        );
        let gw: Gateway = serde_yaml::from_str(GATEWAY).unwrap();
        assert_eq!(gw.name_any(), "web");
    }

    fn agrees_with_crd<K>(file: &str)
    where
        K: Resource + ListableResource,
        K::Scope: 'static,
    {
        let crd = yaml(crd_text(file));
        let spec = &crd["spec"];
        let plural = K::URL_PATH_SEGMENT;
        assert_eq!(K::GROUP, GROUP);
        assert_eq!(spec["group"], K::GROUP, "{file}");
        assert_eq!(
            crd["metadata"]["name"],
            format!("{plural}.{GROUP}"),
            "{file}"
        );
        assert_eq!(spec["names"]["kind"], K::KIND, "{file}");
        assert_eq!(spec["names"]["listKind"], K::LIST_KIND, "{file}");
        assert_eq!(spec["names"]["plural"], plural, "{file}");
        let scope = if TypeId::of::<K::Scope>() == TypeId::of::<ClusterResourceScope>() {
            "Cluster"
        } else {
            assert_eq!(
                TypeId::of::<K::Scope>(),
                TypeId::of::<NamespaceResourceScope>()
            );
            "Namespaced"
        };
        assert_eq!(spec["scope"], scope, "{file}");
        let storage: Vec<_> = spec["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["storage"] == true)
            .collect();
        assert_eq!(storage.len(), 1, "{file}");
        assert_eq!(storage[0]["name"], K::VERSION, "{file}");
        assert_eq!(storage[0]["served"], true, "{file}");
        assert_eq!(K::API_VERSION, format!("{}/{}", K::GROUP, K::VERSION));
    }

    #[test]
    fn resource_constants_agree_with_the_crd_files() {
        agrees_with_crd::<GatewayClass>("gatewayclass.yaml");
        agrees_with_crd::<Gateway>("gateway.yaml");
        agrees_with_crd::<HTTPRoute>("httproute.yaml");
        agrees_with_crd::<TLSRoute>("tlsroute.yaml");
        agrees_with_crd::<ReferenceGrant>("referencegrant.yaml");
        agrees_with_crd::<BackendTLSPolicy>("backendtlspolicy.yaml");
    }

    /// An object with every property of a schema set (the first enum value,
    /// the minimum, a timestamp for date-times, one list item, one map key).
    fn every_field(schema: &Value) -> Value {
        if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
            return first.clone();
        }
        match schema["type"].as_str() {
            Some("object") => {
                let mut m = serde_json::Map::new();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    for (k, s) in props {
                        m.insert(k.clone(), every_field(s));
                    }
                } else if let Some(values) = schema.get("additionalProperties") {
                    m.insert("example.com/key".into(), every_field(values));
                }
                Value::Object(m)
            }
            Some("array") => json!([every_field(&schema["items"])]),
            Some("integer") => schema.get("minimum").cloned().unwrap_or(json!(1)),
            Some("boolean") => json!(true),
            Some("string") if schema["format"] == "date-time" => json!("2025-01-01T00:00:00Z"),
            Some("string") => json!("x"),
            other => panic!("schema type {other:?}"),
        }
    }

    fn every_crd_field_is_kept<K>(file: &str)
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let mut full = every_field(storage_schema(&yaml(crd_text(file))));
        full["apiVersion"] = json!(K::API_VERSION);
        full["kind"] = json!(K::KIND);
        let obj: K = serde_json::from_value(full.clone()).unwrap();
        assert_eq!(serde_json::to_value(&obj).unwrap(), full, "{file}");
    }

    /// Every property the CRD declares is read and written back: no field of
    /// the CRDs is missing from the types or misspelt in a rename.
    #[test]
    fn every_crd_field_has_a_rust_field() {
        every_crd_field_is_kept::<GatewayClass>("gatewayclass.yaml");
        every_crd_field_is_kept::<Gateway>("gateway.yaml");
        every_crd_field_is_kept::<HTTPRoute>("httproute.yaml");
        every_crd_field_is_kept::<TLSRoute>("tlsroute.yaml");
        every_crd_field_is_kept::<ReferenceGrant>("referencegrant.yaml");
        every_crd_field_is_kept::<BackendTLSPolicy>("backendtlspolicy.yaml");
    }

    /// Every key of `value` is a property of `schema`, with the schema's type.
    fn assert_declared(value: &Value, schema: &Value, path: &str) {
        let ty = schema["type"].as_str();
        match value {
            Value::Object(m) => {
                assert_eq!(ty, Some("object"), "{path}");
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in m {
                    let at = format!("{path}.{k}");
                    match (props, schema.get("additionalProperties")) {
                        (Some(props), _) => {
                            let s = props.get(k).unwrap_or_else(|| panic!("{at} not in CRD"));
                            assert_declared(v, s, &at);
                        }
                        (None, Some(values)) => assert_declared(v, values, &at),
                        (None, None) => {} // free-form (metadata)
                    }
                }
            }
            Value::Array(items) => {
                assert_eq!(ty, Some("array"), "{path}");
                for (i, v) in items.iter().enumerate() {
                    assert_declared(v, &schema["items"], &format!("{path}[{i}]"));
                }
            }
            Value::String(_) => assert_eq!(ty, Some("string"), "{path}"),
            Value::Number(_) => assert_eq!(ty, Some("integer"), "{path}"),
            Value::Bool(_) => assert_eq!(ty, Some("boolean"), "{path}"),
            Value::Null => panic!("{path}: null written"),
        }
    }

    /// What the types write (specs of the fixtures, and the statuses weft
    /// writes) is declared by the CRD, so the API server prunes nothing.
    #[test]
    fn what_the_types_write_is_declared_by_the_crds() {
        fn check<K: Serialize + DeserializeOwned>(file: &str, text: &str) {
            let obj: K = serde_yaml::from_str(text).unwrap();
            let written = serde_json::to_value(&obj).unwrap();
            assert_declared(&written, storage_schema(&yaml(crd_text(file))), "");
        }
        check::<GatewayClass>("gatewayclass.yaml", GATEWAY_CLASS);
        check::<Gateway>("gateway.yaml", GATEWAY);
        check::<HTTPRoute>("httproute.yaml", HTTP_ROUTE);
        check::<TLSRoute>("tlsroute.yaml", TLS_ROUTE);
        check::<ReferenceGrant>("referencegrant.yaml", REFERENCE_GRANT);
        check::<BackendTLSPolicy>("backendtlspolicy.yaml", BACKEND_TLS_POLICY);

        let mut gw: Gateway = serde_yaml::from_str(GATEWAY).unwrap();
        gw.status = Some(GatewayStatus {
            addresses: vec![GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: "10.0.0.1".into(),
            }],
            conditions: vec![],
            listeners: vec![ListenerStatus {
                name: "http".into(),
                supported_kinds: vec![RouteGroupKind {
                    group: Some(GROUP.into()),
                    kind: "HTTPRoute".into(),
                }],
                attached_routes: 2,
                conditions: vec![],
            }],
        });
        let written = serde_json::to_value(&gw).unwrap();
        assert_declared(
            &written,
            storage_schema(&yaml(crd_text("gateway.yaml"))),
            "",
        );
    }
}

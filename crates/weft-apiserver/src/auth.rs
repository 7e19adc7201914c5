//! Authentication: who a request is.
//!
//! Two kinds of bearer token, as kube-apiserver's `--token-auth-file` and
//! ServiceAccount token authenticators:
//! - static tokens, given at start (the admin's, the controllers', one per
//!   node), compared by SHA-256 digest;
//! - ServiceAccount tokens: JWTs signed ES256 by the cluster's key, with
//!   kube's claims (`iss`, `sub` = `system:serviceaccount:<ns>:<name>`,
//!   `aud`, `exp`, `iat`, `nbf` and `kubernetes.io` naming the namespace,
//!   the ServiceAccount and the pod they are bound to, with uids). A valid
//!   signature is not enough: the ServiceAccount (and the pod, for a bound
//!   token) must still exist with the same uid — the caller checks that
//!   against the store ([`Authenticated::ServiceAccount`]).
//!
//! No credentials at all is anonymous; the HTTP layer lets anonymous
//! requests reach only the public health and version endpoints (401
//! elsewhere, as kube-apiserver with `anonymous.conditions` limited to
//! those paths). A credential that does not verify is always 401, with the
//! reason in the message (a development cluster: clear errors first).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pki::Pki;
use crate::rbac::UserInfo;

/// The issuer and default audience of ServiceAccount tokens (kube's default
/// `--service-account-issuer` for a cluster.local cluster).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Longest and shortest token lifetimes a TokenRequest may ask for
/// (kube: at least 10 minutes; weft caps at 48 hours).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_EXPIRATION_SECONDS: i64 = 48 * 3600;

/// A refused credential (401 Unauthorized).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthnError(pub String);

/// The object a ServiceAccount token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KubeClaims {
    namespace: String,
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kube: KubeClaims,
}

/// Who a request is, before the live checks of ServiceAccount tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// No credentials.
    Anonymous,
    /// A static token's user.
    User(UserInfo),
    /// A verified ServiceAccount token; valid only while these objects
    /// still exist with these uids.
    ServiceAccount {
        user: UserInfo,
        namespace: String,
        serviceaccount: ObjectRef,
        pod: Option<ObjectRef>,
    },
}

/// The user a ServiceAccount token stands for: kube's name and groups.
pub fn service_account_user(namespace: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        uid: uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

/// The anonymous user (kube's name and group).
pub fn anonymous_user() -> UserInfo {
    UserInfo {
        name: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// A new random token: 32 bytes, base64url (no padding).
pub fn random_token() -> Result<String, AuthnError> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AuthnError(format!("no randomness for a token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verifies bearer tokens and issues ServiceAccount tokens.
pub struct Authenticator {
    static_tokens: HashMap<[u8; 32], UserInfo>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("static_tokens", &self.static_tokens.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Static `(token, user)` pairs and the PKI's signing key. Every static
    /// user is also in `system:authenticated`.
    pub fn new(pki: &Pki, tokens: Vec<(String, UserInfo)>) -> Result<Authenticator, AuthnError> {
        let key = |e: jsonwebtoken::errors::Error| AuthnError(format!("signing key: {e}"));
        let static_tokens = tokens
            .into_iter()
            .map(|(t, mut u)| {
                if !u.groups.iter().any(|g| g == "system:authenticated") {
                    u.groups.push("system:authenticated".into());
                }
                (digest(&t), u)
            })
            .collect();
        Ok(Authenticator {
            static_tokens,
            encoding: EncodingKey::from_ec_pem(pki.sa_key_pem.as_bytes()).map_err(key)?,
            decoding: DecodingKey::from_ec_pem(pki.sa_public_pem.as_bytes()).map_err(key)?,
        })
    }

    /// Who the `Authorization` header value (if any) says the caller is.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, AuthnError> {
        let Some(value) = authorization else {
            return Ok(Authenticated::Anonymous);
        };
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthnError(format!(
                "unsupported Authorization scheme {scheme:?}: only Bearer tokens are accepted"
            )));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthnError("empty bearer token".into()));
        }
        if let Some(user) = self.static_tokens.get(&digest(token)) {
            return Ok(Authenticated::User(user.clone()));
        }
        if token.split('.').count() != 3 {
            return Err(AuthnError("invalid bearer token".into()));
        }
        self.verify_service_account(token)
    }

    fn verify_service_account(&self, token: &str) -> Result<Authenticated, AuthnError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 0;
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
            AuthnError(match e.kind() {
                ErrorKind::ExpiredSignature => "service account token has expired".into(),
                ErrorKind::ImmatureSignature => "service account token is not valid yet".into(),
                ErrorKind::InvalidSignature => "service account token signature is invalid".into(),
                ErrorKind::InvalidIssuer => format!("service account token issuer is not {ISSUER}"),
                ErrorKind::InvalidAudience => {
                    format!("service account token audience does not include {ISSUER}")
                }
                _ => format!("malformed service account token: {e}"),
            })
        })?;
        let c = data.claims;
        let want_sub = format!(
            "system:serviceaccount:{}:{}",
            c.kube.namespace, c.kube.serviceaccount.name
        );
        if c.sub != want_sub {
            return Err(AuthnError(
                "service account token subject does not match its claims".into(),
            ));
        }
        Ok(Authenticated::ServiceAccount {
            user: service_account_user(
                &c.kube.namespace,
                &c.kube.serviceaccount.name,
                &c.kube.serviceaccount.uid,
            ),
            namespace: c.kube.namespace,
            serviceaccount: c.kube.serviceaccount,
            pod: c.kube.pod,
        })
    }

    /// A ServiceAccount token valid from `now` (unix seconds) for
    /// `expiration_seconds`, for `audiences` (the API's own when empty).
    pub fn issue(
        &self,
        namespace: &str,
        serviceaccount: ObjectRef,
        pod: Option<ObjectRef>,
        audiences: Vec<String>,
        now: i64,
        expiration_seconds: i64,
    ) -> Result<String, AuthnError> {
        let aud = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!("system:serviceaccount:{namespace}:{}", serviceaccount.name),
            aud,
            exp: now + expiration_seconds,
            iat: now,
            nbf: now,
            jti: crate::registry::uuid_v4(),
            kube: KubeClaims {
                namespace: namespace.to_string(),
                serviceaccount,
                pod,
            },
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| AuthnError(format!("signing a service account token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "weft-auth-{}-{}",
            std::process::id(),
            crate::registry::uuid_v4()
        ));
        let p = Pki::load_or_create(&dir, &["kubernetes".into()]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        p
    }

    fn admin() -> UserInfo {
        UserInfo {
            name: "weft-admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    fn sa() -> ObjectRef {
        ObjectRef {
            name: "default".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn a_static_token_is_its_user_and_authenticated() {
        let a = Authenticator::new(&pki(), vec![("s3cret".into(), admin())]).unwrap();
        let Authenticated::User(u) = a.authenticate(Some("Bearer s3cret")).unwrap() else {
            panic!("not a user");
        };
        assert_eq!(u.name, "weft-admin");
        assert!(u.groups.contains(&"system:authenticated".to_string()));
    }

    #[test]
    fn no_header_is_anonymous_and_a_wrong_token_is_refused() {
        let a = Authenticator::new(&pki(), vec![("s3cret".into(), admin())]).unwrap();
        assert_eq!(a.authenticate(None).unwrap(), Authenticated::Anonymous);
        assert_eq!(
            a.authenticate(Some("Bearer nope")).unwrap_err().0,
            "invalid bearer token"
        );
        assert!(a
            .authenticate(Some("Basic YTpi"))
            .unwrap_err()
            .0
            .contains("only Bearer"));
        assert_eq!(
            a.authenticate(Some("Bearer ")).unwrap_err().0,
            "empty bearer token"
        );
    }

    #[test]
    fn an_issued_token_verifies_as_its_service_account() {
        let a = Authenticator::new(&pki(), vec![]).unwrap();
        let t = a.issue("team-a", sa(), None, vec![], now(), 3600).unwrap();
        let Authenticated::ServiceAccount {
            user, namespace, ..
        } = a.authenticate(Some(&format!("Bearer {t}"))).unwrap()
        else {
            panic!("not a service account");
        };
        assert_eq!(namespace, "team-a");
        assert_eq!(user.name, "system:serviceaccount:team-a:default");
        assert!(user
            .groups
            .contains(&"system:serviceaccounts:team-a".to_string()));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let a = Authenticator::new(&pki(), vec![]).unwrap();
        let t = a
            .issue("team-a", sa(), None, vec![], now() - 7200, 3600)
            .unwrap();
        let e = a.authenticate(Some(&format!("Bearer {t}"))).unwrap_err();
        assert_eq!(e.0, "service account token has expired");
    }

    #[test]
    fn a_token_signed_by_another_cluster_is_refused() {
        let a = Authenticator::new(&pki(), vec![]).unwrap();
        let b = Authenticator::new(&pki(), vec![]).unwrap();
        let t = b.issue("team-a", sa(), None, vec![], now(), 3600).unwrap();
        let e = a.authenticate(Some(&format!("Bearer {t}"))).unwrap_err();
        assert_eq!(e.0, "service account token signature is invalid");
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let a = Authenticator::new(&pki(), vec![]).unwrap();
        let t = a
            .issue("team-a", sa(), None, vec!["vault".into()], now(), 3600)
            .unwrap();
        let e = a.authenticate(Some(&format!("Bearer {t}"))).unwrap_err();
        assert!(e.0.contains("audience"), "{e}");
    }

    #[test]
    fn garbage_in_jwt_shape_is_a_malformed_token() {
        let a = Authenticator::new(&pki(), vec![]).unwrap();
        let e = a.authenticate(Some("Bearer a.b.c")).unwrap_err();
        assert!(e.0.starts_with("malformed service account token"), "{e}");
    }
}

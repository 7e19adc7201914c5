//! Authentication of an `Authorization` header value: static tokens,
//! ServiceAccount JWTs (signature, claims) and everything malformed must be
//! an answer (user or a 401 reason), never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weft_apiserver::auth::Authenticator;

fn authenticator() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("weft-fuzz-pki-{}", std::process::id()));
        let pki = weft_apiserver::pki::Pki::load_or_create(&dir, &["kubernetes".into()])
            .expect("a PKI for fuzzing");
        let _ = std::fs::remove_dir_all(&dir);
        let user = weft_apiserver::rbac::UserInfo {
            name: "u".into(),
            uid: String::new(),
            groups: vec![],
        };
        Authenticator::new(&pki, vec![("static-token".into(), user)]).expect("an authenticator")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = authenticator().authenticate(Some(header));
    }
});

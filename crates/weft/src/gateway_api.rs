//! weft's Gateway API CustomResourceDefinitions (`deploy/gateway-api/` in
//! the repository, compiled in), applied to every embedded cluster at start
//! so Gateways and routes can be created with `kubectl apply` right away.
//! The CRDs are weft's own, written from the Gateway API specification's
//! field list; see `deploy/gateway-api/README.md`. With them goes weft's
//! own LoadBalancerIPPool (`deploy/weft-lb-crd.yaml`).

use anyhow::{Context, Result};

/// The CRD files, in the order they are applied.
pub const CRDS: &[(&str, &str)] = &[
    (
        "gatewayclass.yaml",
        include_str!("../../../deploy/gateway-api/gatewayclass.yaml"),
    ),
    (
        "gateway.yaml",
        include_str!("../../../deploy/gateway-api/gateway.yaml"),
    ),
    (
        "httproute.yaml",
        include_str!("../../../deploy/gateway-api/httproute.yaml"),
    ),
    (
        "tlsroute.yaml",
        include_str!("../../../deploy/gateway-api/tlsroute.yaml"),
    ),
    (
        "referencegrant.yaml",
        include_str!("../../../deploy/gateway-api/referencegrant.yaml"),
    ),
    (
        "backendtlspolicy.yaml",
        include_str!("../../../deploy/gateway-api/backendtlspolicy.yaml"),
    ),
    // Not Gateway API, weft's own: LoadBalancer address pools.
    (
        "../weft-lb-crd.yaml",
        include_str!("../../../deploy/weft-lb-crd.yaml"),
    ),
];

/// The CRD objects of [`CRDS`] (every YAML document of every file).
pub fn crd_objects() -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (file, text) in CRDS {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("deploy/gateway-api/{file} is not valid YAML"))?;
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Server-side applies every Gateway API CRD (field manager `weft`, forced,
/// as the component ClusterRoles are).
pub async fn apply(client: &kube::Client) -> Result<()> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    let pp = PatchParams::apply("weft").force();
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "customresourcedefinitions");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    for crd in crd_objects()? {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("apply CustomResourceDefinition {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_api_file_holds_one_crd_named_plural_dot_group() {
        let crds = crd_objects().unwrap();
        assert_eq!(crds.len(), CRDS.len());
        for c in &crds {
            assert_eq!(c["kind"], "CustomResourceDefinition");
            let name = c["metadata"]["name"].as_str().unwrap();
            let want = format!(
                "{}.{}",
                c["spec"]["names"]["plural"].as_str().unwrap(),
                c["spec"]["group"].as_str().unwrap()
            );
            assert_eq!(name, want);
        }
    }
}

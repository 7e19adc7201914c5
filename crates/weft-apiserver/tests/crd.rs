//! CustomResourceDefinitions over the secured server on 127.0.0.1, with
//! kubectl and kube-rs: a CRD is applied and established, its kind is served
//! (short name, printer columns, defaults, schema and CEL validation as
//! kubectl prints it, status and scale subresources, a second served version,
//! watches), deleting it removes its objects; and weft's own Gateway API CRDs
//! (deploy/gateway-api) apply and validate.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{json, Value};
use weft_apiserver::ApiServer;

mod common;

use common::{client, config, Server};

async fn start(tag: &str) -> Server {
    common::start("crd", tag).await
}

/// Output of kubectl against the server, with `stdin` as its input.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(s: &Server, args: &[&str], stdin: &str) -> Out {
    use std::io::Write;
    let kc = s.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    })
    .await
    .unwrap()
}

fn has_kubectl(test: &str) -> bool {
    weft_linux::testns::tool_or_skip(test, "kubectl")
}

const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.weft.example.com
spec:
  group: weft.example.com
  scope: Namespaced
  names:
    kind: Widget
    plural: widgets
    singular: widget
    shortNames: [wd]
    categories: [weft]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema: &schema
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.replicas"
              message: replicas must be at least minReplicas
            properties:
              size: {type: string, enum: [small, large]}
              replicas: {type: integer, minimum: 0, maximum: 100, default: 1}
              minReplicas: {type: integer, default: 0}
              host: {type: string, pattern: '^[a-z0-9.-]+$'}
              ports:
                type: array
                maxItems: 3
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name, port]
                  properties:
                    name: {type: string}
                    port: {type: integer, minimum: 1, maximum: 65535}
                    protocol: {type: string, enum: [TCP, UDP], default: TCP}
              match:
                type: object
                default: {}
                properties:
                  path:
                    type: object
                    default: {}
                    properties:
                      type: {type: string, default: PathPrefix}
                      value: {type: string, default: /}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema: *schema
"#;

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "weft.example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn widgets_at(s: &Server, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("weft.example.com", version, "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    Api::namespaced_with(client(s), "default", &ar)
}

fn crds(s: &Server) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "customresourcedefinitions");
    Api::all_with(client(s), &ar)
}

/// Creates the widgets CRD with kube-rs (no kubectl needed).
async fn with_widgets(tag: &str) -> Server {
    let s = start(tag).await;
    let crd: Value = serde_yaml::from_str(WIDGETS).unwrap();
    crds(&s)
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    s
}

async fn create(s: &Server, obj: Value) -> Result<DynamicObject, kube::Error> {
    widgets_at(s, "v1")
        .create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
}

fn yaml_of(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap()
}

/// kubectl apply of a bad widget: must fail, naming the field.
async fn refused(tag: &str, spec: Value) -> String {
    let s = with_widgets(tag).await;
    let o = kubectl(&s, &["apply", "-f", "-"], &yaml_of(&widget("bad", spec))).await;
    assert!(!o.ok, "{}", o.stdout);
    o.stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_crd_and_it_becomes_established() {
    if !has_kubectl("crd_established") {
        return;
    }
    let s = start("established").await;
    let o = kubectl(&s, &["apply", "-f", "-"], WIDGETS).await;
    assert!(o.ok, "{}", o.stderr);
    let o = kubectl(
        &s,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=20s",
            "crd/widgets.weft.example.com",
        ],
        "",
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let crd = crds(&s).get("widgets.weft.example.com").await.unwrap();
    let status = &crd.data["status"];
    assert_eq!(status["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(status["storedVersions"], json!(["v1"]));
    let names: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "True")
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["NamesAccepted", "Established"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_whose_name_is_not_plural_dot_group_is_refused() {
    let s = start("badname").await;
    let mut crd: Value = serde_yaml::from_str(WIDGETS).unwrap();
    crd["metadata"]["name"] = json!("widgets.other.example.com");
    crd["spec"]["versions"][1]["storage"] = json!(true);
    let e = crds(&s)
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("metadata.name: Invalid value: \"widgets.other.example.com\": must be spec.names.plural+\".\"+spec.group"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("must have exactly one version marked as storage version"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_by_short_name_prints_the_printer_columns() {
    if !has_kubectl("crd_get_columns") {
        return;
    }
    let s = with_widgets("columns").await;
    let o = kubectl(
        &s,
        &["apply", "-f", "-"],
        &yaml_of(&widget("w1", json!({"size": "large", "replicas": 3}))),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("widget.weft.example.com/w1 created"),
        "{}",
        o.stdout
    );
    let o = kubectl(&s, &["get", "wd"], "").await;
    assert!(o.ok, "{}", o.stderr);
    let lines: Vec<Vec<&str>> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "SIZE", "REPLICAS", "AGE"],
        "{}",
        o.stdout
    );
    assert_eq!(&lines[1][..3], ["w1", "large", "3"], "{}", o.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enum_violation_is_refused_naming_the_field() {
    if !has_kubectl("crd_enum") {
        return;
    }
    let err = refused("enum", json!({"size": "huge"})).await;
    assert!(
        err.contains("The Widget \"bad\" is invalid")
            && err.contains(
                "spec.size: Unsupported value: \"huge\": supported values: \"small\", \"large\""
            ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_violation_is_refused_naming_the_field() {
    if !has_kubectl("crd_pattern") {
        return;
    }
    let err = refused("pattern", json!({"size": "small", "host": "Not A Host"})).await;
    assert!(
        err.contains("spec.host: Invalid value: \"Not A Host\": spec.host in body should match '^[a-z0-9.-]+$'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximum_violation_is_refused_naming_the_field() {
    if !has_kubectl("crd_maximum") {
        return;
    }
    let err = refused(
        "maximum",
        json!({"size": "small", "ports": [{"name": "a", "port": 70000}]}),
    )
    .await;
    assert!(
        err.contains("spec.ports[0].port: Invalid value: 70000: spec.ports[0].port in body should be less than or equal to 65535"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_items_are_refused_naming_the_field() {
    if !has_kubectl("crd_max_items") {
        return;
    }
    let ports: Vec<Value> = (1..=4)
        .map(|i| json!({"name": format!("p{i}"), "port": i}))
        .collect();
    let err = refused("maxitems", json!({"size": "small", "ports": ports})).await;
    assert!(
        err.contains("spec.ports: Too many: 4: must have at most 3 items"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_field_is_refused_naming_it() {
    if !has_kubectl("crd_required") {
        return;
    }
    let err = refused("required", json!({"replicas": 2})).await;
    assert!(err.contains("spec.size: Required value"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_is_refused_naming_the_field() {
    if !has_kubectl("crd_type") {
        return;
    }
    let err = refused("type", json!({"size": "small", "replicas": "three"})).await;
    assert!(
        err.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_list_map_key_is_refused() {
    if !has_kubectl("crd_list_map") {
        return;
    }
    let err = refused(
        "listmap",
        json!({"size": "small", "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
    )
    .await;
    assert!(err.contains("spec.ports[1]: Duplicate value"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cel_rule_violation_is_refused_with_its_message() {
    if !has_kubectl("crd_cel") {
        return;
    }
    let err = refused(
        "cel",
        json!({"size": "small", "replicas": 1, "minReplicas": 2}),
    )
    .await;
    assert!(
        err.contains("spec: Invalid value: \"object\": replicas must be at least minReplicas"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_are_applied_and_unknown_fields_pruned() {
    let s = with_widgets("defaults").await;
    let w = create(
        &s,
        widget(
            "d",
            json!({"size": "small", "ports": [{"name": "a", "port": 80}], "bogus": true}),
        ),
    )
    .await
    .unwrap();
    let got = widgets_at(&s, "v1").get("d").await.unwrap();
    for o in [&w, &got] {
        let spec = &o.data["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["minReplicas"], 0);
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["match"],
            json!({"path": {"type": "PathPrefix", "value": "/"}})
        );
        assert!(spec.get("bogus").is_none(), "{spec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_only_through_the_status_subresource() {
    let s = with_widgets("status").await;
    create(&s, widget("st", json!({"size": "small"})))
        .await
        .unwrap();
    let api = widgets_at(&s, "v1");
    let pp = PatchParams::default();
    let main = api
        .patch("st", &pp, &Patch::Merge(json!({"status": {"replicas": 9}})))
        .await
        .unwrap();
    assert!(main.data.get("status").is_none(), "{:?}", main.data);
    let st = api
        .patch_status(
            "st",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 2}, "spec": {"size": "large"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["replicas"], 2);
    assert_eq!(st.data["spec"]["size"], "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_writes_the_spec_replicas_path() {
    if !has_kubectl("crd_scale") {
        return;
    }
    let s = with_widgets("scale").await;
    create(&s, widget("sc", json!({"size": "small", "replicas": 1})))
        .await
        .unwrap();
    let o = kubectl(&s, &["scale", "wd/sc", "--replicas=5"], "").await;
    assert!(o.ok, "{}", o.stderr);
    let w = widgets_at(&s, "v1").get("sc").await.unwrap();
    assert_eq!(w.data["spec"]["replicas"], 5);
    widgets_at(&s, "v1")
        .patch_status(
            "sc",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 4, "selector": "app=sc"}})),
        )
        .await
        .unwrap();
    let o = kubectl(
        &s,
        &[
            "get",
            "--raw",
            "/apis/weft.example.com/v1/namespaces/default/widgets/sc/scale",
        ],
        "",
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let scale: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(
        scale["status"],
        json!({"replicas": 4, "selector": "app=sc"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_served_version_shows_and_takes_objects_at_its_api_version() {
    let s = with_widgets("versions").await;
    create(&s, widget("v", json!({"size": "small"})))
        .await
        .unwrap();
    let beta = widgets_at(&s, "v1beta1");
    let got = beta.get("v").await.unwrap();
    assert_eq!(got.types.unwrap().api_version, "weft.example.com/v1beta1");
    let mut b = widget("b", json!({"size": "large"}));
    b["apiVersion"] = json!("weft.example.com/v1beta1");
    beta.create(&PostParams::default(), &serde_json::from_value(b).unwrap())
        .await
        .unwrap();
    let at_v1 = widgets_at(&s, "v1").get("b").await.unwrap();
    assert_eq!(at_v1.types.unwrap().api_version, "weft.example.com/v1");
    let listed = beta.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_the_custom_resource_with_its_subresources() {
    let s = with_widgets("discovery").await;
    let c = client(&s);
    let text = c
        .request_text(
            http::Request::get("/apis/weft.example.com/v1")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    assert_eq!(list["resources"][0]["shortNames"], json!(["wd"]));
    assert_eq!(list["resources"][0]["categories"], json!(["weft"]));
    let groups = c.list_api_groups().await.unwrap();
    let g = groups
        .groups
        .iter()
        .find(|g| g.name == "weft.example.com")
        .unwrap();
    let versions: Vec<&str> = g.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["v1", "v1beta1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_and_label_selectors_filter_custom_objects() {
    let s = with_widgets("selectors").await;
    let mut a = widget("a", json!({"size": "small"}));
    a["metadata"]["labels"] = json!({"tier": "front"});
    create(&s, a).await.unwrap();
    create(&s, widget("b", json!({"size": "small"})))
        .await
        .unwrap();
    let api = widgets_at(&s, "v1");
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("b"));
    let by_label = api
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    assert_eq!(by_label.items[0].metadata.name.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_patches_of_custom_objects_get_415() {
    let s = with_widgets("smp").await;
    create(&s, widget("p", json!({"size": "small"})))
        .await
        .unwrap();
    let e = widgets_at(&s, "v1")
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": "large"}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    let merged = widgets_at(&s, "v1")
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/size", "value": "large"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["spec"]["size"], "large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_then_updates_a_custom_object() {
    let s = with_widgets("ssa").await;
    let api = widgets_at(&s, "v1");
    let pp = PatchParams::apply("test").force();
    api.patch(
        "a",
        &pp,
        &Patch::Apply(widget("a", json!({"size": "small"}))),
    )
    .await
    .unwrap();
    let w = api
        .patch(
            "a",
            &pp,
            &Patch::Apply(widget("a", json!({"size": "large", "replicas": 4}))),
        )
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["replicas"], 4);
    assert_eq!(w.metadata.generation, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_rs_watch_sees_custom_objects_come_and_go() {
    let s = with_widgets("watch").await;
    let api = widgets_at(&s, "v1");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    create(&s, widget("w", json!({"size": "small"})))
        .await
        .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("a watch event within 10s")
            .unwrap()
            .unwrap();
        match ev {
            kube::api::WatchEvent::Added(o) => {
                assert_eq!(o.data["spec"]["replicas"], 1);
                seen.push("added")
            }
            kube::api::WatchEvent::Deleted(_) => seen.push("deleted"),
            _ => {}
        }
    }
    assert_eq!(seen, ["added", "deleted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_crd_removes_its_objects_and_its_api() {
    let s = with_widgets("delete").await;
    create(&s, widget("gone", json!({"size": "small"})))
        .await
        .unwrap();
    crds(&s)
        .delete("widgets.weft.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let e = widgets_at(&s, "v1").get("gone").await.unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 404),
        "{e:?}"
    );
    // Re-creating the CRD does not bring the objects back.
    let crd: Value = serde_yaml::from_str(WIDGETS).unwrap();
    crds(&s)
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd).unwrap(),
        )
        .await
        .unwrap();
    let listed = widgets_at(&s, "v1")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert!(!s
        .dir
        .join("api/widgets.weft.example.com/default/gone.json")
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_custom_objects() {
    let s = with_widgets("nsdelete").await;
    let c = client(&s);
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let gvk = GroupVersionKind::gvk("weft.example.com", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let in_tmp: Api<DynamicObject> = Api::namespaced_with(c, "tmp", &ar);
    let mut w = widget("w", json!({"size": "small"}));
    w["metadata"]["namespace"] = json!("tmp");
    in_tmp
        .create(&PostParams::default(), &serde_json::from_value(w).unwrap())
        .await
        .unwrap();
    ns.delete("tmp", &DeleteParams::default()).await.unwrap();
    let e = in_tmp.get("w").await.unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 404),
        "{e:?}"
    );
    let e = ns.get("tmp").await.unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 404),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_objects_persist_across_a_restart() {
    let s = with_widgets("restart").await;
    create(&s, widget("kept", json!({"size": "large"})))
        .await
        .unwrap();
    let rv = s.api.resource_version();
    let reopened = ApiServer::open(config(&s.dir)).unwrap();
    assert!(reopened.resource_version() >= rv);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(reopened.clone().serve(l));
    let c = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let gvk = GroupVersionKind::gvk("weft.example.com", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let api: Api<DynamicObject> = Api::namespaced_with(c, "default", &ar);
    let w = api.get("kept").await.unwrap();
    assert_eq!(w.data["spec"]["size"], "large");
    assert!(reopened
        .custom_resource_schemas()
        .contains_key("weft.example.com/v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_the_server_cannot_evaluate_is_accepted_with_a_warning() {
    if !has_kubectl("crd_cel_warning") {
        return;
    }
    let s = start("celwarn").await;
    let crd = WIDGETS.replace(
        "rule: \"self.minReplicas <= self.replicas\"",
        "rule: \"self.host.isURL()\"",
    );
    let o = kubectl(&s, &["apply", "-f", "-"], &crd).await;
    assert!(o.ok, "{}", o.stderr);
    let o = kubectl(
        &s,
        &["apply", "-f", "-"],
        &yaml_of(&widget("w", json!({"size": "small", "host": "a.b"}))),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("Warning:") && o.stderr.contains("self.host.isURL()"),
        "{}",
        o.stderr
    );
}

fn gateway_api_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway-api")
}

/// Every YAML document of deploy/gateway-api.
fn gateway_api_crds() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(gateway_api_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Server-side applies every Gateway API CRD, as `weft up` does.
async fn apply_gateway_api(s: &Server) {
    let pp = PatchParams::apply("weft").force();
    for crd in gateway_api_crds() {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        crds(s)
            .patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

async fn with_gateway_api(tag: &str) -> Server {
    let s = start(tag).await;
    apply_gateway_api(&s).await;
    s
}

fn gw_api(s: &Server, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client(s), "default", &ar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_gateway_api_crds_all_apply_and_serve_their_versions() {
    let s = with_gateway_api("gwcrds").await;
    // A second apply (the next `weft up` of the same cluster) changes nothing.
    let rv = s.api.resource_version();
    apply_gateway_api(&s).await;
    assert_eq!(s.api.resource_version(), rv);
    let served: Vec<(String, Vec<String>)> = crds(&s)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.data["spec"]["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|v| v["served"] == true)
                    .map(|v| v["name"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let want = [
        ("backendtlspolicies.gateway.networking.k8s.io", "v1"),
        ("gatewayclasses.gateway.networking.k8s.io", "v1"),
        ("gateways.gateway.networking.k8s.io", "v1"),
        ("httproutes.gateway.networking.k8s.io", "v1"),
        ("referencegrants.gateway.networking.k8s.io", "v1beta1"),
        ("tlsroutes.gateway.networking.k8s.io", "v1alpha2"),
    ];
    for (name, version) in want {
        let (_, vs) = served
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing: {served:?}"));
        assert!(vs.iter().any(|v| v == version), "{name}: {vs:?}");
    }
}

fn sample_gateway() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"gatewayClassName": "weft",
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                                   "allowedRoutes": {"namespaces": {"from": "Same"}}},
                                  {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "web.example.com",
                                   "tls": {"mode": "Terminate", "certificateRefs": [{"name": "web-cert"}]}}]}})
}

fn sample_route() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"parentRefs": [{"name": "web"}],
                    "hostnames": ["web.example.com"],
                    "rules": [{"matches": [{"path": {"value": "/api"}}],
                               "filters": [{"type": "RequestHeaderModifier",
                                            "requestHeaderModifier": {"add": [{"name": "x-weft", "value": "1"}]}}],
                               "backendRefs": [{"name": "api", "port": 8080}]},
                              {"backendRefs": [{"name": "site", "port": 80, "weight": 3}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_gateway_and_httproute_validate_with_defaults() {
    let s = with_gateway_api("gwsample").await;
    let gw = gw_api(&s, "v1", "Gateway", "gateways")
        .create(
            &PostParams::default(),
            &serde_json::from_value(sample_gateway()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        gw.data["spec"]["listeners"][1]["tls"]["certificateRefs"][0]["kind"],
        "Secret"
    );
    let route = gw_api(&s, "v1", "HTTPRoute", "httproutes")
        .create(
            &PostParams::default(),
            &serde_json::from_value(sample_route()).unwrap(),
        )
        .await
        .unwrap();
    let rules = &route.data["spec"]["rules"];
    assert_eq!(rules[0]["matches"][0]["path"]["type"], "PathPrefix");
    assert_eq!(
        rules[1]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"}}])
    );
    assert_eq!(rules[0]["backendRefs"][0]["weight"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_refuses_a_gateway_with_a_bad_listener() {
    if !has_kubectl("gw_bad_listener") {
        return;
    }
    let s = with_gateway_api("gwbad").await;
    let mut gw = sample_gateway();
    gw["spec"]["listeners"][0]["protocol"] = json!("SCTP");
    gw["spec"]["listeners"][0]["port"] = json!(70000);
    let o = kubectl(&s, &["apply", "-f", "-"], &yaml_of(&gw)).await;
    assert!(!o.ok, "{}", o.stdout);
    assert!(
        o.stderr.contains("spec.listeners[0].port: Invalid value: 70000: spec.listeners[0].port in body should be less than or equal to 65535"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("spec.listeners[0].protocol"),
        "{}",
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_without_tls_breaks_the_gateway_cel_rule() {
    let s = with_gateway_api("gwcel").await;
    let mut gw = sample_gateway();
    gw["spec"]["listeners"][1]
        .as_object_mut()
        .unwrap()
        .remove("tls");
    let e = gw_api(&s, "v1", "Gateway", "gateways")
        .create(&PostParams::default(), &serde_json::from_value(gw).unwrap())
        .await
        .unwrap_err();
    let kube::Error::Api(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("spec.listeners: Invalid value: \"array\": HTTPS and TLS listeners need tls"),
        "{}",
        e.message
    );
}

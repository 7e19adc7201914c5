//! Deployments → ReplicaSets → Pods, DaemonSets → Pods and the Events the
//! controllers and the scheduler record, against the embedded API server
//! in-process. Nodes are plain Node objects (no runtime); a stand-in for
//! the kubelets marks bound pods Running and Ready, as a node would.

mod common;

use std::collections::BTreeSet;

use common::{kubelets, make_node, start, wait_for};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use weft_apiserver::Limits;
use weft_controllers::deployment::{template_hash, POD_TEMPLATE_HASH, REVISION};

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    }))
    .unwrap()
}

/// The ReplicaSets controlled by the Deployment `name`, by revision.
async fn replicasets_of(client: &kube::Client, name: &str) -> Vec<ReplicaSet> {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let mut out: Vec<ReplicaSet> = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == name)
        })
        .collect();
    out.sort_by_key(|rs| rs.annotations().get(REVISION).cloned());
    out
}

async fn pods_in(client: &kube::Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_a_replicaset_which_creates_its_pods() {
    let (client, _dir) = start("rs", Limits::default()).await;
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "img:1"))
        .await
        .unwrap();
    let (rs, pods) = wait_for("a ReplicaSet with 3 pods", async || {
        let rss = replicasets_of(&client, "web").await;
        let pods = pods_in(&client).await;
        match rss.as_slice() {
            [rs] if pods.len() == 3 && rs.status.as_ref().is_some_and(|s| s.replicas == 3) => {
                Ok((rs.clone(), pods))
            }
            _ => Err(format!("{} replicasets, {} pods", rss.len(), pods.len())),
        }
    })
    .await;
    let hash = rs.labels()[POD_TEMPLATE_HASH].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.annotations()[REVISION], "1");
    for p in &pods {
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", rs.name_any().as_str())
        );
        assert_eq!(p.labels()[POD_TEMPLATE_HASH], hash);
        assert!(p.name_any().starts_with(&format!("web-{hash}-")));
    }
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_change_makes_revision_two_and_rolls_every_pod() {
    let (client, _dir) = start("roll", Limits::default()).await;
    make_node(&client, "n1", None).await;
    let kubelets = kubelets(client.clone());
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 2, "img:1"))
        .await
        .unwrap();
    let available = |want_updated: i32| {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let s = d.status.clone().unwrap_or_default();
            let progressing = s
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Progressing")
                .and_then(|c| c.reason.clone());
            if s.updated_replicas == Some(want_updated)
                && s.replicas == Some(2)
                && s.available_replicas == Some(2)
                && s.observed_generation == d.metadata.generation
                && progressing.as_deref() == Some("NewReplicaSetAvailable")
            {
                Ok(d)
            } else {
                Err(format!("{s:?}"))
            }
        }
    };
    wait_for("the first rollout", || available(2)).await;

    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}});
    let d = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let new_hash = template_hash(&d);
    wait_for("the second rollout", || available(2)).await;
    let rss = wait_for("the old ReplicaSet at zero", async || {
        let rss = replicasets_of(&client, "web").await;
        let idle = rss.iter().find(|rs| rs.annotations()[REVISION] == "1");
        match idle.and_then(|rs| rs.status.clone()) {
            Some(s) if s.replicas == 0 && rss.len() == 2 => Ok(rss),
            other => Err(format!("{} replicasets, old status {other:?}", rss.len())),
        }
    })
    .await;
    let new = &rss[1];
    assert_eq!(new.annotations()[REVISION], "2");
    assert_eq!(new.name_any(), format!("web-{new_hash}"));
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(0));
    let pods = wait_for("only new pods", async || {
        let pods = pods_in(&client).await;
        let hashes: BTreeSet<String> = pods
            .iter()
            .map(|p| p.labels()[POD_TEMPLATE_HASH].clone())
            .collect();
        if pods.len() == 2 && hashes.len() == 1 {
            Ok(pods)
        } else {
            Err(format!("{} pods of hashes {hashes:?}", pods.len()))
        }
    })
    .await;
    assert_eq!(pods[0].labels()[POD_TEMPLATE_HASH], new_hash);
    kubelets.abort();
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_deployment_from_before_replicasets_are_adopted() {
    let (client, _dir) = start("adopt", Limits::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployments
        .create(&PostParams::default(), &deployment("web", 2, "img:1"))
        .await
        .unwrap();
    // What an earlier weft left: pods owned by the Deployment itself.
    let hash = template_hash(&d);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{hash}-old{i}"), "namespace": "default",
                         "labels": {"app": "web", POD_TEMPLATE_HASH: hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": d.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [{"name": "c", "image": "img:1"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let adopted = wait_for("the pods owned by the ReplicaSet", async || {
        let pods = pods_in(&client).await;
        let owners: Vec<String> = pods
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.owner_references()[0].kind,
                    p.owner_references()[0].name
                )
            })
            .collect();
        let rs_name = format!("ReplicaSet/web-{hash}");
        if owners.iter().all(|o| *o == rs_name) && !owners.is_empty() {
            Ok(pods)
        } else {
            Err(format!("{owners:?}"))
        }
    })
    .await;
    let names: BTreeSet<String> = adopted.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        names,
        BTreeSet::from([format!("web-{hash}-old0"), format!("web-{hash}-old1")])
    );
    let rss = replicasets_of(&client, "web").await;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(2));
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_a_pod_on_every_node_but_the_tainted_one() {
    let (client, _dir) = start("ds", Limits::default()).await;
    for (n, taint) in [("n1", None), ("n2", None), ("n3", Some("dedicated"))] {
        make_node(&client, n, taint).await;
    }
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "c", "image": "agent:1"}]}}
        }
    }))
    .unwrap();
    daemonsets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let nodes = wait_for("daemon pods bound to n1 and n2", async || {
        let pods = pods_in(&client).await;
        let nodes: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .collect();
        if pods.len() == 2 && nodes.len() == 2 {
            Ok(nodes)
        } else {
            Err(format!("{} pods on {nodes:?}", pods.len()))
        }
    })
    .await;
    assert_eq!(nodes, BTreeSet::from(["n1".to_string(), "n2".to_string()]));
    let status = wait_for("the DaemonSet's status", async || {
        let ds = daemonsets.get("agent").await.map_err(|e| e.to_string())?;
        match ds.status {
            Some(s) if s.current_number_scheduled == 2 => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 2);
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.updated_number_scheduled, Some(2));
    let stored = daemonsets.get("agent").await.unwrap();
    let strategy = stored.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_in_core_and_events_v1_lists() {
    let (client, _dir) = start("events", Limits::default()).await;
    make_node(&client, "n1", None).await;
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 1, "img:1"))
        .await
        .unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let v1: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons = |want: &'static [&'static str]| {
        let core = core.clone();
        async move {
            let list = core
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let have: BTreeSet<String> =
                list.items.iter().filter_map(|e| e.reason.clone()).collect();
            if want.iter().all(|r| have.contains(*r)) {
                Ok(list.items)
            } else {
                Err(format!("{have:?}"))
            }
        }
    };
    wait_for("the events", || {
        reasons(&["ScalingReplicaSet", "SuccessfulCreate", "Scheduled"])
    })
    .await;

    // kubectl describe deployment's query.
    let d = deployments.get("web").await.unwrap();
    let selector = format!(
        "involvedObject.kind=Deployment,involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid={}",
        d.uid().unwrap()
    );
    let mine = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(mine.len(), 1, "{mine:?}");
    let e = &mine[0];
    assert_eq!(e.reason.as_deref(), Some("ScalingReplicaSet"));
    let message = e.message.as_deref().unwrap();
    assert!(
        message.starts_with("Scaled up replica set web-") && message.ends_with("from 0 to 1"),
        "{message}"
    );
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("deployment-controller")
    );
    assert!(e.event_time.is_some());

    // The same object through events.k8s.io/v1.
    let same = v1.get(&e.name_any()).await.unwrap();
    assert_eq!(same.note.as_deref(), Some(message));
    assert_eq!(
        same.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("web")
    );
    assert_eq!(
        same.reporting_controller.as_deref(),
        Some("deployment-controller")
    );
    assert_eq!(same.action.as_deref(), Some("Scale"));
    let listed = v1
        .list(&ListParams::default().fields("regarding.kind=Pod,reason=Scheduled"))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    let note = listed[0].note.clone().unwrap();
    assert!(
        note.starts_with("Successfully assigned default/web-") && note.ends_with(" to n1"),
        "{note}"
    );
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_gets_a_failed_scheduling_warning() {
    let (client, _dir) = start("failsched", Limits::default()).await;
    make_node(&client, "n1", None).await;
    let controllers = tokio::spawn(weft_controllers::run(client.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "picky", "namespace": "default"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "img:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let v1: Api<Event> = Api::namespaced(client.clone(), "default");
    let e = wait_for("a FailedScheduling event", async || {
        let list = v1
            .list(&ListParams::default().fields("regarding.name=picky"))
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reporting_controller.as_deref(), Some("default-scheduler"));
    assert_eq!(
        e.note.as_deref(),
        Some("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    );
    controllers.abort();
}

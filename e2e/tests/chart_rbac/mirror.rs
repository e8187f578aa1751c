//! mirror-controller under its chart ServiceAccount, in hostess mode (with hostess-agent under
//! the agent ServiceAccount the chart makes) and in services mode (mirrors and the ImageSwap map
//! in namespaces of their own, the Lease in the release namespace).

use std::process::Command;

use base64::Engine;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use wharf_core::agent;
use wharf_core::crd::{ImageRegistryAccount, RegistryMirror};
use wharf_core::mirror::mirror_line;
use wharf_core::mirror::names::{
    CONFIG_HASH_ANNOTATION, IMAGESWAP_CONFIG_MAP, IMAGESWAP_FINALIZER, IMAGESWAP_MAPS_KEY,
    config_secret_name, daemonset_name, headless_service_name, service_name, statefulset_name,
};
use wharf_e2e::TestEnv;

use crate::support::*;
use wharf_e2e::secret_text;

const UPSTREAM: &str = "registry-1.docker.io";
/// Where the chart's mirror-controller container keeps the imageswap-maps version (its /tmp).
const MAP_VERSION_FILE: &str = "/tmp/wharf-imageswap-maps.version";

/// Values of a release with only mirror-controller, no pod, and this test's mirrors only.
fn mirror_values(id: &str, env: Value) -> Value {
    json!({
        "mirrorController": {
            "replicas": 0,
            "env": env,
            "extraEnv": [{"name": "MIRROR_SELECTOR", "value": format!("{TEST_LABEL}={id}")}],
        },
        "registryController": {"enabled": false},
        "secretRotator": {"enabled": false},
    })
}

fn mirror(id: &str, name: &str, spec: Value) -> RegistryMirror {
    serde_json::from_value(json!({
        "apiVersion": "k8s.osp.tech/v1",
        "kind": "RegistryMirror",
        "metadata": {"name": name, "labels": {TEST_LABEL: id}},
        "spec": spec,
    }))
    .expect("a RegistryMirror")
}

/// Synced for the current generation; Ready False because no pod may run here.
fn synced(mirror: &RegistryMirror) -> bool {
    mirror.status.as_ref().is_some_and(|status| {
        status.observed_generation == mirror.metadata.generation
            && has_condition(&status.conditions, "Synced", "True", None)
            && has_condition(&status.conditions, "Ready", "False", Some("PodsNotReady"))
    })
}

fn template_hash(statefulset: &StatefulSet) -> String {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .unwrap_or_default()
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn cluster_ip(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("a ClusterIP")
}

/// Waits until every child of mirror `name` in `namespace` is gone (garbage-collected).
async fn wait_children_gone(env: &TestEnv, namespace: &str, name: &str) {
    let services: Api<Service> = Api::namespaced(env.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), namespace);
    env.wait_gone(&services, &service_name(name), WAIT).await;
    env.wait_gone(&services, &headless_service_name(name), WAIT)
        .await;
    env.wait_gone(
        &Api::<StatefulSet>::namespaced(env.client.clone(), namespace),
        &statefulset_name(name),
        WAIT,
    )
    .await;
    env.wait_gone(
        &Api::<DaemonSet>::namespaced(env.client.clone(), namespace),
        &daemonset_name(name),
        WAIT,
    )
    .await;
    env.wait_gone(&secrets, &config_secret_name(name), WAIT)
        .await;
}

/// What no mirror-controller may do, whatever its mode.
async fn mirror_controller_refusals(client: &Client) {
    let dry_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    refused_listing(
        Api::<Secret>::namespaced(client.clone(), "kube-system"),
        "mirror-controller reading kube-system Secrets",
    )
    .await;
    refused(
        Api::<Node>::all(client.clone())
            .delete("wharf-rbac-absent", &dry_delete)
            .await,
        "mirror-controller deleting a Node",
    );
    refused_listing(
        Api::<ImageRegistryAccount>::all(client.clone()),
        "mirror-controller reading registry accounts",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_controller_and_hostess_agent_reconcile_under_their_chart_accounts() {
    let env = TestEnv::new("rbac-mirror").await;
    let id = test_id(&env);
    let ns = env.namespace.clone();
    let release = Release::install(&env, &[], &mirror_values(&id, json!({}))).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns);
    let login = |password: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "upstream-login"},
            "stringData": {"username": "robot", "password": password},
        }))
        .expect("a Secret")
    };
    let (controller, controller_pod) =
        start_controller(&env, &release, "mirror-controller", &[]).await;

    // A missing credentials Secret: a False condition and a Warning Event, then the Secret
    // appears (it is watched) and the mirror syncs with every child owned by it.
    let name = format!("hub-{id}");
    let masquerade = format!("hub-{id}.mirror.test");
    let mirrors: Api<RegistryMirror> = Api::all(env.client.clone());
    mirrors
        .create(
            &PostParams::default(),
            &mirror(
                &id,
                &name,
                json!({"upstreamUrl": UPSTREAM, "masqueradeUrl": masquerade,
                       "credentialsSecret": "upstream-login"}),
            ),
        )
        .await
        .expect("creates the mirror");
    env.wait_for(&mirrors, &name, WAIT, |m| {
        m.status.as_ref().is_some_and(|s| {
            has_condition(
                &s.conditions,
                "Synced",
                "False",
                Some("CredentialsSecretMissing"),
            )
        })
    })
    .await;
    wait_warning(&env, "default", &name, "CredentialsSecretMissing").await;
    secrets
        .create(&PostParams::default(), &login("first-pw"))
        .await
        .expect("creates the credentials Secret");
    let live = env.wait_for(&mirrors, &name, WAIT, synced).await;
    let uid = live.uid().expect("uid");
    let services: Api<Service> = Api::namespaced(env.client.clone(), &ns);
    let service = services.get(&service_name(&name)).await.expect("Service");
    let headless = services
        .get(&headless_service_name(&name))
        .await
        .expect("headless Service");
    let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &ns);
    let statefulset = statefulsets
        .get(&statefulset_name(&name))
        .await
        .expect("StatefulSet");
    let daemonsets: Api<DaemonSet> = Api::namespaced(env.client.clone(), &ns);
    let daemonset = daemonsets
        .get(&daemonset_name(&name))
        .await
        .expect("DaemonSet");
    let config = secrets
        .get(&config_secret_name(&name))
        .await
        .expect("nginx config Secret");
    for (kind, meta) in [
        ("Service", &service.metadata),
        ("headless Service", &headless.metadata),
        ("StatefulSet", &statefulset.metadata),
        ("DaemonSet", &daemonset.metadata),
        ("config Secret", &config.metadata),
    ] {
        assert!(controlled_by(meta, &uid), "{kind} is owned by the mirror");
    }
    let status = live.status.clone().expect("status");
    assert_eq!(status.cluster_ip, Some(cluster_ip(&service)));
    assert_eq!(status.masquerade_url.as_deref(), Some(masquerade.as_str()));
    assert!(
        secret_text(&config, "default.conf").contains(&basic("robot", "first-pw")),
        "the credentials reach nginx"
    );
    assert!(
        secret_text(&config, "tls.crt").contains("BEGIN CERTIFICATE"),
        "the generated certificate sits beside the nginx config"
    );
    let agent_account = release.object_name("hostess-agent");
    assert_eq!(
        daemonset
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.service_account_name.as_deref()),
        Some(agent_account.as_str()),
        "the agents run as the chart's hostess-agent ServiceAccount"
    );

    // Update: new credentials and a new upstream reach nginx, and the pods roll.
    let hash_before = template_hash(&statefulset);
    secrets
        .replace(
            "upstream-login",
            &PostParams::default(),
            &login("second-pw"),
        )
        .await
        .expect("changes the credentials");
    env.wait_for(&secrets, &config_secret_name(&name), WAIT, |s| {
        secret_text(s, "default.conf").contains(&basic("robot", "second-pw"))
    })
    .await;
    let rolled = env
        .wait_for(&statefulsets, &statefulset_name(&name), WAIT, |s| {
            template_hash(s) != hash_before
        })
        .await;
    mirrors
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"upstreamUrl": "quay.io"}})),
        )
        .await
        .expect("changes the upstream");
    env.wait_for(&secrets, &config_secret_name(&name), WAIT, |s| {
        let text = secret_text(s, "default.conf");
        text.contains("quay.io") && !text.contains(UPSTREAM)
    })
    .await;
    env.wait_for(&statefulsets, &statefulset_name(&name), WAIT, |s| {
        template_hash(s) != template_hash(&rolled)
    })
    .await;
    env.wait_for(&mirrors, &name, WAIT, |m| {
        synced(m) && m.metadata.generation == Some(2)
    })
    .await;

    // hostess-agent, as the DaemonSet's pod would run it, follows the mirror's Service.
    let daemonset = daemonsets
        .get(&daemonset_name(&name))
        .await
        .expect("DaemonSet");
    let template = &daemonset.spec.as_ref().expect("spec").template;
    let node = PodProcess::new(&env, &ns, template, "hostess-agent", "agent-rbac-0").await;
    assert_eq!(node.service_account, agent_account);
    let hosts_file = node.path(agent::DEFAULT_HOSTS_FILE);
    std::fs::write(&hosts_file, "127.0.0.1\tlocalhost\n").expect("a hosts file");
    let agent_port = free_port();
    let mut command = node.command(&env, "hostess-agent");
    command
        .env(agent::ENV_HOST_ROOT, node.path(agent::DEFAULT_HOST_ROOT))
        .env(
            agent::ENV_HOSTS_BACKUP_FILE,
            node.path(agent::DEFAULT_HOSTS_BACKUP_FILE),
        )
        .env("HTTP_ADDR", format!("127.0.0.1:{agent_port}"))
        .env("LOG_FORMAT", "text");
    let agent_process = env.spawn_process("hostess-agent", command);
    wait_ready(&agent_process, agent_port).await;
    let line = format!("{}\t{masquerade}", cluster_ip(&service));
    let hosts = || std::fs::read_to_string(&hosts_file).unwrap_or_default();
    wait_until(
        "the agent writes the mirror's hosts line",
        &agent_process,
        || hosts().contains(&line),
    )
    .await;
    // containerd reaches the mirror by ClusterIP: the node resolves names with the host's DNS.
    let hosts_toml = node
        .path(agent::DEFAULT_CONTAINERD_CERTS_DIR)
        .join("quay.io/hosts.toml");
    let mirror_host = format!("[host.\"https://{}\"]", cluster_ip(&service));
    wait_until(
        "containerd is pointed at the mirror",
        &agent_process,
        || std::fs::read_to_string(&hosts_toml).is_ok_and(|t| t.contains(&mirror_host)),
    )
    .await;

    // Delete: the children are garbage-collected, and the agent drops its line.
    mirrors
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deletes the mirror");
    env.wait_gone(&mirrors, &name, WAIT).await;
    wait_children_gone(&env, &ns, &name).await;
    wait_until("the agent removes its hosts line", &agent_process, || {
        !hosts().contains(&masquerade)
    })
    .await;
    assert!(hosts().starts_with("127.0.0.1\tlocalhost\n"), "{}", hosts());
    assert_never_forbidden(&controller);
    assert_never_forbidden(&agent_process);

    // Refusals, through the same kubeconfigs the processes used.
    let controller_client = client_from(&controller_pod.kubeconfig(&env)).await;
    mirror_controller_refusals(&controller_client).await;
    refused(
        Api::<Deployment>::namespaced(controller_client, &ns)
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &serde_json::from_value(json!({
                    "metadata": {"name": "not-mine"},
                    "spec": {"selector": {"matchLabels": {"a": "b"}},
                             "template": {"metadata": {"labels": {"a": "b"}},
                                          "spec": {"containers": [{"name": "c", "image": "x"}]}}}
                }))
                .expect("a Deployment"),
            )
            .await,
        "mirror-controller creating a Deployment",
    );
    let agent_client = client_from(&node.kubeconfig(&env)).await;
    refused_listing(
        Api::<Secret>::namespaced(agent_client.clone(), &ns),
        "hostess-agent reading Secrets of its namespace",
    )
    .await;
    refused_listing(
        Api::<Service>::namespaced(agent_client.clone(), "kube-system"),
        "hostess-agent reading Services of another namespace",
    )
    .await;
    refused(
        Api::<Service>::namespaced(agent_client.clone(), &ns)
            .delete(
                &service_name(&name),
                &DeleteParams {
                    dry_run: true,
                    ..DeleteParams::default()
                },
            )
            .await,
        "hostess-agent deleting a Service",
    );
    refused_listing(
        Api::<RegistryMirror>::all(agent_client),
        "hostess-agent reading RegistryMirrors",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_controller_in_services_mode_keeps_the_imageswap_map_under_its_chart_account() {
    let env = TestEnv::new("rbac-mirror-svc").await;
    let id = test_id(&env);
    let mirrors_ns = format!("{}-m", env.namespace);
    let swap_ns = format!("{}-s", env.namespace);
    let values = mirror_values(
        &id,
        json!({"NAMESPACE": mirrors_ns, "ADDRESSING_SCHEME": "services",
               "IMAGESWAP_NAMESPACE": swap_ns}),
    );
    let release = Release::install(&env, &[mirrors_ns.clone(), swap_ns.clone()], &values).await;
    // The agents' ServiceAccount lives where their DaemonSets do.
    Api::<ServiceAccount>::namespaced(env.client.clone(), &mirrors_ns)
        .get(&release.object_name("hostess-agent"))
        .await
        .expect("the agents' ServiceAccount in NAMESPACE");
    let (controller, controller_pod) =
        start_controller(&env, &release, "mirror-controller", &[]).await;
    assert_eq!(controller_pod.env("NAMESPACE"), Some(mirrors_ns.as_str()));
    let version_file = controller_pod.path(MAP_VERSION_FILE);

    // Create: the finalizer, the children in NAMESPACE, and the mirror's line in the map.
    let name = format!("svc-{id}");
    let masquerade = format!("svc-{id}.mirror.test");
    let mirrors: Api<RegistryMirror> = Api::all(env.client.clone());
    mirrors
        .create(
            &PostParams::default(),
            &mirror(
                &id,
                &name,
                json!({"upstreamUrl": UPSTREAM, "masqueradeUrl": masquerade}),
            ),
        )
        .await
        .expect("creates the mirror");
    let live = env.wait_for(&mirrors, &name, WAIT, synced).await;
    assert!(
        live.finalizers().iter().any(|f| f == IMAGESWAP_FINALIZER),
        "{:?}",
        live.finalizers()
    );
    let services: Api<Service> = Api::namespaced(env.client.clone(), &mirrors_ns);
    let ip = cluster_ip(&services.get(&service_name(&name)).await.expect("Service"));
    let maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &swap_ns);
    let map_text = |cm: &ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get(IMAGESWAP_MAPS_KEY).cloned())
            .unwrap_or_default()
    };
    let line = mirror_line(&masquerade, &ip);
    env.wait_for(&maps, IMAGESWAP_CONFIG_MAP, WAIT, |cm| {
        map_text(cm).lines().any(|l| l == line)
    })
    .await;
    let uid = live.uid().expect("uid");
    let statefulset = Api::<StatefulSet>::namespaced(env.client.clone(), &mirrors_ns)
        .get(&statefulset_name(&name))
        .await
        .expect("StatefulSet in NAMESPACE");
    let daemonset = Api::<DaemonSet>::namespaced(env.client.clone(), &mirrors_ns)
        .get(&daemonset_name(&name))
        .await
        .expect("DaemonSet in NAMESPACE");
    let headless = services
        .get(&headless_service_name(&name))
        .await
        .expect("headless Service in NAMESPACE");
    for meta in [
        &statefulset.metadata,
        &daemonset.metadata,
        &headless.metadata,
    ] {
        assert!(
            controlled_by(meta, &uid),
            "{:?} is owned by the mirror",
            meta.name
        );
    }

    // Update: a new masquerade host replaces the line.
    mirrors
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"masqueradeUrl": format!("new-{masquerade}")}})),
        )
        .await
        .expect("changes the masquerade host");
    let new_line = mirror_line(&format!("new-{masquerade}"), &ip);
    env.wait_for(&maps, IMAGESWAP_CONFIG_MAP, WAIT, |cm| {
        let text = map_text(cm);
        text.lines().any(|l| l == new_line) && !text.lines().any(|l| l == line)
    })
    .await;
    env.wait_for(&mirrors, &name, WAIT, synced).await;

    // The liveness probe of the chart (`--map-check`) passes under the same account.
    let mut check: Command = controller_pod.command(&env, "mirror-controller");
    check
        .arg("--map-check")
        .env("MAP_VERSION_FILE", &version_file);
    let output = check.output().expect("runs --map-check");
    assert!(
        output.status.success(),
        "--map-check failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Delete: the finalizer removes the line, then the mirror and its children go.
    mirrors
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deletes the mirror");
    env.wait_gone(&mirrors, &name, WAIT).await;
    let left = maps.get(IMAGESWAP_CONFIG_MAP).await.expect("the map stays");
    assert!(
        !map_text(&left).contains(&masquerade),
        "{}",
        map_text(&left)
    );
    wait_children_gone(&env, &mirrors_ns, &name).await;
    assert_never_forbidden(&controller);

    // Refusals: outside NAMESPACE it holds the Lease and the one ConfigMap, nothing else.
    let client = client_from(&controller_pod.kubeconfig(&env)).await;
    mirror_controller_refusals(&client).await;
    refused_listing(
        Api::<Secret>::namespaced(client.clone(), &env.namespace),
        "mirror-controller reading Secrets of the release namespace",
    )
    .await;
    let other: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "not-imageswap"}, "data": {"k": "v"}
    }))
    .expect("a ConfigMap");
    maps.create(&PostParams::default(), &other)
        .await
        .expect("creates another ConfigMap");
    refused(
        Api::<ConfigMap>::namespaced(client.clone(), &swap_ns)
            .get("not-imageswap")
            .await,
        "mirror-controller reading another ConfigMap of IMAGESWAP_NAMESPACE",
    );
    refused(
        Api::<ConfigMap>::namespaced(client, &swap_ns)
            .list(&ListParams::default())
            .await,
        "mirror-controller listing every ConfigMap of IMAGESWAP_NAMESPACE",
    );
}

/// Polls `check` (a file on the emulated node) until it holds; fails with the agent's log.
async fn wait_until(what: &str, process: &wharf_e2e::TestProcess, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            process.log_tail(80)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

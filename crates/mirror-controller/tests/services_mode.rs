//! Services mode on the real API server: the mirror's line in `imageswap-maps` next to lines it
//! does not own, `mirror-controller --map-check` (the built binary) both ways, and the
//! finalizer that takes the line out when the mirror is deleted.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{CONVERGE, Harness};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use mirror_controller::Settings;
use serde_json::json;
use wharf_core::mirror::AddressingScheme;
use wharf_core::mirror::names::IMAGESWAP_FINALIZER;

const FOREIGN: &str = "default:\nquay.io:registry.corp/quay.io\n# kept as is\n";

fn maps(config_map: &ConfigMap) -> String {
    config_map
        .data
        .as_ref()
        .and_then(|d| d.get("maps"))
        .cloned()
        .unwrap_or_default()
}

/// Runs `mirror-controller --map-check` as the liveness probe would; returns (exit code, output).
fn map_check(settings: &Settings) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mirror-controller"))
        .arg("--map-check")
        .env("KUBECONFIG", wharf_e2e::kubeconfig_path())
        .env("ADDRESSING_SCHEME", "services")
        .env("NAMESPACE", &settings.namespace)
        .env("MAP_VERSION_FILE", &settings.map_version_file)
        .output()
        .expect("running mirror-controller --map-check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn services_mode_keeps_one_line_per_mirror_and_map_check_sees_foreign_changes() {
    let h = Harness::new("mirror-services").await;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "imageswap-maps", "namespace": h.namespace()},
        "data": {"maps": FOREIGN}
    }))
    .expect("ConfigMap");
    h.config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("create imageswap-maps");
    let mut settings = h.settings();
    settings.addressing_scheme = AddressingScheme::Services;
    h.start("controller", settings.clone());

    let name = h
        .create(&h.mirror("docker", json!({"upstreamUrl": "hub.docker.io"})))
        .await
        .name_any();
    let mirror = h.wait_synced(&name).await;
    assert!(mirror.finalizers().iter().any(|f| f == IMAGESWAP_FINALIZER));
    let service: Service = h
        .services
        .get(&format!("registry-mirror-{name}"))
        .await
        .expect("Service");
    let ip = service.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    let line = format!("mirror-hub.docker.io:{ip}/mirror-hub.docker.io");
    let live = h
        .env
        .wait_for(
            &h.config_maps,
            "imageswap-maps",
            CONVERGE,
            |cm: &ConfigMap| maps(cm).contains(&line),
        )
        .await;
    assert_eq!(
        maps(&live),
        format!("{FOREIGN}{line}\n"),
        "foreign lines stay byte for byte"
    );

    let (code, output) = map_check(&settings);
    assert_eq!(code, 0, "unchanged since the controller wrote it: {output}");
    assert!(
        output.contains("as written by mirror-controller"),
        "{output}"
    );

    // Someone else edits the ConfigMap (keeping the mirror's line): the liveness probe fails.
    let patched = format!("{}extra.io:10.0.0.1/extra.io\n", maps(&live));
    h.config_maps
        .patch(
            "imageswap-maps",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"maps": patched}})),
        )
        .await
        .expect("foreign edit");
    let (code, output) = map_check(&settings);
    assert_eq!(code, 1, "a foreign change is detected: {output}");
    assert!(output.contains("was changed by someone else"), "{output}");

    // A foreign edit that drops the mirror's line is repaired (and recorded again).
    h.config_maps
        .patch(
            "imageswap-maps",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"maps": FOREIGN}})),
        )
        .await
        .expect("foreign edit");
    h.env
        .wait_for(
            &h.config_maps,
            "imageswap-maps",
            CONVERGE,
            |cm: &ConfigMap| maps(cm).contains(&line),
        )
        .await;
    let (code, output) = map_check(&settings);
    assert_eq!(
        code, 0,
        "the repair is the controller's own write: {output}"
    );

    // Deleting the mirror takes its line out and releases the mirror.
    h.mirrors
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete mirror");
    h.env
        .wait_gone(&h.mirrors, &name, Duration::from_secs(30))
        .await;
    let after = h
        .config_maps
        .get("imageswap-maps")
        .await
        .expect("ConfigMap");
    assert_eq!(maps(&after), FOREIGN, "only the mirror's line is gone");
}

#[tokio::test]
async fn map_check_refuses_hostess_mode_and_tolerates_no_record() {
    let h = Harness::new("mirror-map-check").await;
    let settings = h.settings();
    let output = Command::new(env!("CARGO_BIN_EXE_mirror-controller"))
        .arg("--map-check")
        .env("KUBECONFIG", wharf_e2e::kubeconfig_path())
        .env("NAMESPACE", h.namespace())
        .output()
        .expect("running --map-check");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("only applies to ADDRESSING_SCHEME=services")
    );
    let (code, output) = map_check(&settings);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("no version recorded"), "{output}");
}

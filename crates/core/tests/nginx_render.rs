//! Golden tests of the mirror's rendered nginx config: the exact text for typical inputs, so that
//! every change to the config is a reviewed diff. `WHARF_UPDATE_GOLDEN=1 cargo test -p wharf-core
//! --test nginx_render` rewrites the files after an intended change.

use std::path::PathBuf;

use wharf_core::nginx::{MirrorNginxConfig, NginxPaths, render};

fn golden(name: &str, config: &MirrorNginxConfig) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nginx_golden")
        .join(name);
    let rendered = render(config);
    if std::env::var_os("WHARF_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with WHARF_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if rendered != expected {
        let first_difference = rendered
            .lines()
            .zip(expected.lines())
            .enumerate()
            .find(|(_, (got, want))| got != want)
            .map(|(line, (got, want))| {
                format!("line {}:\n  rendered: {got}\n  golden:   {want}", line + 1)
            })
            .unwrap_or_else(|| "the texts differ in length".to_owned());
        panic!(
            "{} is stale ({first_difference}); if the change is intended, rerun with WHARF_UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

fn docker_hub() -> MirrorNginxConfig {
    MirrorNginxConfig {
        upstream: "docker.io".into(),
        masquerade_host: "mirror-docker.io".into(),
        upstream_credentials: None,
        cache_max_size_bytes: 17_179_869_184,
        tag_ttl_seconds: 60,
        extra_upstream_ca_bundle: false,
        paths: NginxPaths::in_pod(),
    }
}

#[test]
fn docker_hub_anonymous() {
    golden("docker-hub.conf", &docker_hub());
}

#[test]
fn private_registry_with_credentials_and_extra_ca() {
    let config = MirrorNginxConfig {
        upstream: "registry.example.com:5000".into(),
        masquerade_host: "mirror.example.com".into(),
        upstream_credentials: Some(("robot$ci".into(), "p@ss:w\"ord".into())),
        cache_max_size_bytes: 85_899_345_920,
        tag_ttl_seconds: 300,
        extra_upstream_ca_bundle: true,
        paths: NginxPaths::in_pod(),
    };
    golden("private-registry.conf", &config);
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(&docker_hub()), render(&docker_hub()));
}

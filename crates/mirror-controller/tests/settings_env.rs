//! The built binary's settings from the environment: seed variables under their names, and
//! malformed values stopping the start with a message naming the variable.

use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirror-controller"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running mirror-controller");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn help_lists_every_variable() {
    let (code, help) = run(&[], &["--help"]);
    assert_eq!(code, Some(0), "{help}");
    for var in [
        "DOCKER_CERTIFICATE_SECRET",
        "NAMESPACE",
        "SECONDS_BETWEEN_STREAMS",
        "DOCKER_REGISTRY",
        "HOSTESS_DOCKER_REGISTRY",
        "HOSTESS_DOCKER_IMAGE",
        "HOSTESS_DOCKER_TAG",
        "ADDRESSING_SCHEME",
        "IMAGESWAP_NAMESPACE",
        "SS_DS_LABELS",
        "SS_DS_TEMPLATE_LABELS",
        "SS_DS_TOLERATIONS",
        "IMAGE_PULL_SECRETS",
        "CA_CERTIFICATE_BUNDLE",
        "NGINX_IMAGE",
        "MIRROR_SELECTOR",
        "MAP_VERSION_FILE",
        "LOG_FORMAT",
        "HTTP_ADDR",
        "LEADER_ELECTION",
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from --help:\n{help}"
        );
    }
    assert!(help.contains("--map-check"), "{help}");
}

#[test]
fn malformed_environment_values_stop_the_start_naming_the_variable() {
    let cases = [
        ("SS_DS_LABELS", "{'team': 'infra'}", "JSON object"),
        ("SS_DS_TEMPLATE_LABELS", "not json", "JSON object"),
        (
            "SS_DS_TOLERATIONS",
            "[{\"tolerationSeconds\": \"soon\"}]",
            "item 0",
        ),
        (
            "IMAGE_PULL_SECRETS",
            "good,Not_Good",
            "not a valid Secret name",
        ),
        ("ADDRESSING_SCHEME", "dns", "`hostess` or `services`"),
        ("NAMESPACE", "Upper Case", "not an object name"),
    ];
    for (var, value, problem) in cases {
        let (code, output) = run(&[(var, value)], &[]);
        assert_eq!(code, Some(2), "{var}={value} must stop the start: {output}");
        assert!(output.contains(var), "{var} not named: {output}");
        assert!(output.contains(problem), "{problem:?} not in: {output}");
    }
}

#[test]
fn an_invalid_selector_stops_the_start() {
    let (code, output) = run(
        &[
            (
                "KUBECONFIG",
                wharf_e2e::kubeconfig_path().to_str().expect("utf-8 path"),
            ),
            ("MIRROR_SELECTOR", "shard in (a"),
            ("HTTP_ADDR", "127.0.0.1:0"),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("MIRROR_SELECTOR"), "{output}");
}

//! Upstream authentication: the mirror sends the RegistryMirror's Basic credentials; a wrong one
//! is a clear error that is not cached; without credentials the upstream's challenge (Basic or
//! bearer-token) reaches the client unchanged and is never cached in place of content.

use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::registry::TOKEN_REALM;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

fn basic_upstream() -> UpstreamOptions {
    UpstreamOptions {
        basic_auth: Some(("mirror-robot".into(), "correct horse".into())),
        ..UpstreamOptions::default()
    }
}

#[test]
fn wrong_credentials_are_a_clear_error_and_not_cached() {
    let wrong = MirrorOptions {
        credentials: Some(("mirror-robot".into(), "wrong".into())),
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("auth-wrong", basic_upstream(), &wrong);
    let image = world.push_image("private/app", "v1", &[2 * MIB]);

    let node = world.new_containerd();
    let reference = world.upstream_ref("private/app", "v1");
    let error = node
        .pull(&reference, None)
        .expect_err("the upstream rejects the credentials");
    assert!(
        error.contains("401") || error.contains("nauthorized"),
        "ctr: {error}"
    );
    let skopeo_error = world
        .skopeo()
        .copy(
            &world.mirror_ref("private/app", "v1"),
            &world.new_dir("skopeo"),
            &[],
        )
        .expect_err("the upstream rejects the credentials");
    assert!(
        skopeo_error.contains("credentialsSecret"),
        "skopeo shows the mirror's explanation: {skopeo_error}"
    );
    for path in ["/v2/", "/v2/private/app/manifests/v1"] {
        let response = Request::get(world.mirror_url(path), &world.pki.ca_cert)
            .header("Accept", ACCEPT)
            .send();
        assert_eq!(response.status, 401, "{}", response.describe());
        let body = String::from_utf8_lossy(&response.body);
        assert!(
            body.contains("UNAUTHORIZED") && body.contains("credentialsSecret"),
            "{body}"
        );
        assert_eq!(
            response.header("WWW-Authenticate"),
            None,
            "no challenge the client could not answer"
        );
        assert_ne!(
            response.header("X-Cache-Status"),
            Some("HIT"),
            "{}",
            response.describe()
        );
    }

    // Fixed credentials (mirror-controller re-renders and the pod restarts on the same cache):
    // nothing of the failure was cached.
    world.mirror.reconfigure(|config| {
        config.upstream_credentials = Some(("mirror-robot".into(), "correct horse".into()))
    });
    node.pull(&reference, None)
        .unwrap_or_else(|e| panic!("with the right credentials: {e}\n{}", world.logs()));
    assert_eq!(
        node.image_target(&reference).as_deref(),
        Some(image.manifest.digest.as_str())
    );
    for blob in image.blobs() {
        assert_eq!(world.upstream.blob_fetches(&blob.digest).bytes, blob.size);
    }
    let dir = world.new_dir("skopeo");
    world
        .skopeo()
        .copy(&world.mirror_ref("private/app", "v1"), &dir, &[])
        .unwrap_or_else(|e| panic!("skopeo with the right credentials: {e}\n{}", world.logs()));
}

#[test]
fn without_credentials_the_basic_challenge_reaches_the_client() {
    let mut world = Scenario::start("auth-none", basic_upstream(), &MirrorOptions::default());
    world.push_image("private/app", "v1", &[MIB]);
    for _ in 0..2 {
        let response = Request::get(
            world.mirror_url("/v2/private/app/manifests/v1"),
            &world.pki.ca_cert,
        )
        .header("Accept", ACCEPT)
        .send();
        assert_eq!(response.status, 401, "{}", response.describe());
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some("Basic realm=\"wharf-test-upstream\""),
            "{}",
            response.describe()
        );
        assert_ne!(
            response.header("X-Cache-Status"),
            Some("HIT"),
            "a 401 is never served from the cache"
        );
    }
}

#[test]
fn bearer_token_challenge_passes_through_uncached() {
    let upstream = UpstreamOptions {
        token_auth: true,
        ..UpstreamOptions::default()
    };
    let world = Scenario::start("auth-token", upstream, &MirrorOptions::default());
    let ca = &world.pki.ca_cert;

    // The ping's challenge tells clients where the token realm is; it is the same for
    // everyone, so it is cached (and served while the upstream is down) with the challenge.
    for cache in ["MISS", "HIT"] {
        let ping = Request::get(world.mirror_url("/v2/"), ca).send();
        assert_eq!(ping.status, 401, "{}", ping.describe());
        assert_eq!(
            ping.header("X-Cache-Status"),
            Some(cache),
            "{}",
            ping.describe()
        );
        let challenge = ping.header("WWW-Authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"{TOKEN_REALM}\"")),
            "{challenge}"
        );
    }

    for _ in 0..2 {
        let response = Request::get(world.mirror_url("/v2/team/app/manifests/v1"), ca)
            .header("Accept", ACCEPT)
            .send();
        assert_eq!(response.status, 401, "{}", response.describe());
        let challenge = response.header("WWW-Authenticate").unwrap_or_default();
        assert!(
            challenge.contains(&format!("realm=\"{TOKEN_REALM}\"")),
            "{challenge}"
        );
        assert!(
            challenge.contains("scope=\"repository:team/app:pull\""),
            "{challenge}"
        );
        assert_ne!(response.header("X-Cache-Status"), Some("HIT"));
    }
    let upstream_manifest_requests = world.upstream.manifest_requests();
    assert_eq!(
        upstream_manifest_requests.len(),
        2,
        "each asked upstream: {upstream_manifest_requests:?}"
    );

    // A real client follows the challenge to the realm (where nothing answers here).
    let error = world
        .skopeo()
        .inspect_raw(&world.mirror_ref("team/app", "v1"))
        .expect_err("no token server");
    assert!(
        error.contains("127.0.0.1:9"),
        "skopeo went to the upstream's realm: {error}"
    );
}

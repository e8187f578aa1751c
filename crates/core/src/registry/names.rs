//! Names of an ImageRegistry's children and of the registry's host, shared by registry-controller,
//! registry-auth and secret-rotator so they cannot drift apart.

/// DNS zone of registry host names when `OPERATOR_DNS_ZONE` is not set (as the original).
pub const DEFAULT_DNS_ZONE: &str = "svc.example.org";

/// `<name>.<namespace>.<dns_zone>`: the host name clients use (status `hostname`).
pub fn hostname(name: &str, namespace: &str, dns_zone: &str) -> String {
    format!("{name}.{namespace}.{dns_zone}")
}

/// The names the serving certificate covers: the public host name, then the in-cluster ones
/// (`<name>.<namespace>.svc` and `….svc.cluster.local`), without duplicates.
pub fn tls_dns_names(name: &str, namespace: &str, dns_zone: &str) -> Vec<String> {
    let mut names = vec![hostname(name, namespace, dns_zone)];
    for internal in [
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ] {
        if !names.contains(&internal) {
            names.push(internal);
        }
    }
    names
}

/// The registry's StatefulSet and Service are both named after the ImageRegistry.
pub fn workload_name(name: &str) -> String {
    name.to_owned()
}

/// `imageregistry-<name>-pvc`, the image store.
pub fn pvc_name(name: &str) -> String {
    format!("imageregistry-{name}-pvc")
}

/// `imageregistry-<name>`: ServiceAccount, Role and RoleBinding of registry-auth.
pub fn rbac_name(name: &str) -> String {
    format!("imageregistry-{name}")
}

/// `<name>-tls`: the serving certificate Secret wharf maintains (self-signed or cert-manager's),
/// as the original named it. A user-given `spec.tls.secretName` replaces it.
pub fn tls_secret_name(name: &str) -> String {
    format!("{name}-tls")
}

/// `<name>-tls-ca`: the self-signed CA that signs `<name>-tls`; never mounted into a pod.
pub fn tls_ca_secret_name(name: &str) -> String {
    format!("{name}-tls-ca")
}

/// `<name>-auth-ca`: the token-signing certificate and key, mounted into both containers
/// (registry-auth signs with it; the registry trusts it as its root cert bundle).
pub fn token_ca_secret_name(name: &str) -> String {
    format!("{name}-auth-ca")
}

/// `imageregistry-<name>-config`: the registry's rendered `config.yml`.
pub fn config_secret_name(name: &str) -> String {
    format!("imageregistry-{name}-config")
}

/// The Service port registry-auth listens on, and therefore the realm's port.
pub const AUTH_PORT: u16 = 5001;

/// Token realm: registry-auth's endpoint on its own port of the registry's host.
pub fn token_realm(hostname: &str) -> String {
    format!("https://{hostname}:{AUTH_PORT}/auth/token")
}

/// Token issuer name (the `iss` claim the registry requires).
pub fn token_issuer(name: &str, namespace: &str) -> String {
    format!("wharf-registry-auth/{namespace}/{name}")
}

/// Token service name (the `aud` claim and the `service` parameter): the registry's host name.
pub fn token_service(hostname: &str) -> String {
    hostname.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_original() {
        assert_eq!(
            hostname("registry", "infra", DEFAULT_DNS_ZONE),
            "registry.infra.svc.example.org"
        );
        assert_eq!(workload_name("registry"), "registry");
        assert_eq!(pvc_name("registry"), "imageregistry-registry-pvc");
        assert_eq!(rbac_name("registry"), "imageregistry-registry");
        assert_eq!(tls_secret_name("registry"), "registry-tls");
    }

    #[test]
    fn tls_names_cover_public_and_cluster_names_once() {
        assert_eq!(
            tls_dns_names("r", "ns", "example.org"),
            ["r.ns.example.org", "r.ns.svc", "r.ns.svc.cluster.local"]
        );
        assert_eq!(
            tls_dns_names("r", "ns", "svc.cluster.local"),
            ["r.ns.svc.cluster.local", "r.ns.svc"]
        );
    }

    #[test]
    fn realm_points_at_the_auth_port() {
        assert_eq!(
            token_realm("r.ns.example.org"),
            "https://r.ns.example.org:5001/auth/token"
        );
    }
}

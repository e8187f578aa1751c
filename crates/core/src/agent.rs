//! The contract between mirror-controller's DaemonSet and hostess-agent: environment variables
//! and in-container paths. Both sides use these constants, so they cannot drift apart.

/// Name of the mirror's Service to follow (`registry-mirror-<n>`).
pub const ENV_SERVICE_NAME: &str = "SERVICE_NAME";
/// Namespace of that Service.
pub const ENV_SERVICE_NAMESPACE: &str = "SERVICE_NAMESPACE";
/// The RegistryMirror's name (`<n>`), used to mark the agent's lines and files.
pub const ENV_MIRROR_NAME: &str = "MIRROR_NAME";
/// The masquerade host nodes use for the mirror (hostess mode).
pub const ENV_MASQUERADE_HOST: &str = "MASQUERADE_HOST";
/// The upstream registry host[:port] the mirror proxies.
pub const ENV_UPSTREAM_HOST: &str = "UPSTREAM_HOST";
/// `hostess` or `services`, as mirror-controller's ADDRESSING_SCHEME.
pub const ENV_ADDRESSING_SCHEME: &str = "ADDRESSING_SCHEME";
/// The mirror's CA certificate (PEM), from the user's mounted TLS Secret; kept current by the
/// kubelet.
pub const ENV_CA_FILE: &str = "CA_FILE";
/// The mirror's CA certificate itself (PEM), for a generated CA; when set, CA_FILE is unused.
pub const ENV_CA_CERT: &str = "CA_CERT";
/// The node's hosts file, as mounted into the agent.
pub const ENV_HOSTS_FILE: &str = "HOSTS_FILE";
/// Lock file shared by every agent on the node while editing the hosts file.
pub const ENV_HOSTS_LOCK_FILE: &str = "HOSTS_LOCK_FILE";
/// The node's `/etc/docker/certs.d`, as mounted.
pub const ENV_DOCKER_CERTS_DIR: &str = "DOCKER_CERTS_DIR";
/// The node's `/etc/containerd/certs.d`, as mounted.
pub const ENV_CONTAINERD_CERTS_DIR: &str = "CONTAINERD_CERTS_DIR";
/// The node's `/etc/containers/registries.conf.d`, as mounted.
pub const ENV_CRIO_REGISTRIES_DIR: &str = "CRIO_REGISTRIES_DIR";
/// The node's `/etc/containers/certs.d`, as mounted.
pub const ENV_CRIO_CERTS_DIR: &str = "CRIO_CERTS_DIR";
/// Whether to send SIGHUP to CRI-O after changing its drop-in (needs hostPID).
pub const ENV_CRIO_RELOAD: &str = "CRIO_RELOAD";

/// Where the user's TLS Secret (DOCKER_CERTIFICATE_SECRET) is mounted in the agent container.
pub const CA_MOUNT_DIR: &str = "/etc/wharf/mirror-tls";
/// Default CA file inside that mount.
pub const DEFAULT_CA_FILE: &str = "/etc/wharf/mirror-tls/ca.crt";
/// Default in-container paths of the node's files (each a hostPath mount of the real path).
pub const DEFAULT_HOSTS_FILE: &str = "/host/etc/hosts";
pub const DEFAULT_HOSTS_LOCK_FILE: &str = "/host/run/wharf/hosts.lock";
pub const DEFAULT_DOCKER_CERTS_DIR: &str = "/host/etc/docker/certs.d";
pub const DEFAULT_CONTAINERD_CERTS_DIR: &str = "/host/etc/containerd/certs.d";
pub const DEFAULT_CRIO_REGISTRIES_DIR: &str = "/host/etc/containers/registries.conf.d";
pub const DEFAULT_CRIO_CERTS_DIR: &str = "/host/etc/containers/certs.d";

/// Where the node's root filesystem paths are mounted in the agent: a file the agent writes at
/// `<HOST_ROOT>/etc/…` is `/etc/…` on the node (containerd's `hosts.toml` names CA files by
/// their node path).
pub const ENV_HOST_ROOT: &str = "HOST_ROOT";
pub const DEFAULT_HOST_ROOT: &str = "/host";
/// The hosts-file backup and write journal (`<file>` and `<file>.new`); must be on a node mount
/// shared by every agent of the node, hence next to the lock file by default.
pub const ENV_HOSTS_BACKUP_FILE: &str = "HOSTS_BACKUP_FILE";
pub const DEFAULT_HOSTS_BACKUP_FILE: &str = "/host/run/wharf/hosts.wharf.bak";
/// Optional containerd `dial_timeout` for the mirror host (Go duration, e.g. `3s`): how fast a
/// dead mirror falls back to the upstream. Unset: containerd's default.
pub const ENV_CONTAINERD_DIAL_TIMEOUT: &str = "CONTAINERD_DIAL_TIMEOUT";

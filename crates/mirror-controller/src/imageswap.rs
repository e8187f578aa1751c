//! Services mode: keeping each mirror's line in `imageswap-maps` (other lines untouched), the
//! finalizer that removes it, the recorded resourceVersion, and `--map-check`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use wharf_core::mirror::names::{IMAGESWAP_CONFIG_MAP, IMAGESWAP_FINALIZER, IMAGESWAP_MAPS_KEY};
use wharf_core::mirror::{AddressingScheme, MapEdit, edit_maps, has_line, mirror_line};

use crate::context::Context;
use crate::error::{Error, Failure, is_conflict, is_not_found};
use crate::settings::Settings;
use crate::stored::StoredMirror;

/// How often an edit is retried when another writer changed the ConfigMap in between.
const CONFLICT_RETRIES: usize = 8;

/// Makes sure the mirror's line maps its masquerade host to its ClusterIP (removing the line of
/// a masquerade host it used before). The finalizer is added first, so the line is never left
/// behind by a deletion.
pub async fn ensure_line(
    ctx: &Context,
    mirror: &StoredMirror,
    masquerade_host: &str,
    cluster_ip: &str,
) -> Result<(), Failure> {
    add_finalizer(ctx, mirror).await?;
    let line = mirror_line(masquerade_host, cluster_ip);
    let status = ctx.verified.status_of(mirror);
    let previous = status
        .as_ref()
        .and_then(|status| status.masquerade_url.as_deref())
        .filter(|previous| *previous != masquerade_host);
    let cached = cached_maps(ctx);
    if let Some((maps, version)) = &cached
        && has_line(maps, masquerade_host, &line)
        && previous
            .is_none_or(|previous| !maps.lines().any(|l| l.starts_with(&format!("{previous}:"))))
    {
        record_baseline(ctx, version)?;
        return Ok(());
    }
    edit(
        ctx,
        MapEdit {
            masquerade_host,
            line: Some(&line),
            previous_host: previous,
        },
    )
    .await?;
    Ok(())
}

/// On deletion (or after leaving services mode): removes the mirror's line, then the finalizer.
pub async fn finalize(ctx: &Context, mirror: &StoredMirror) -> Result<(), Error> {
    if !mirror.finalizers().iter().any(|f| f == IMAGESWAP_FINALIZER) {
        return Ok(());
    }
    let hosts: Vec<String> = [
        ctx.verified
            .status_of(mirror)
            .and_then(|s| s.masquerade_url),
        mirror.masquerade_host(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for host in &hosts {
        edit(
            ctx,
            MapEdit {
                masquerade_host: host,
                line: None,
                previous_host: None,
            },
        )
        .await?;
    }
    remove_finalizer(ctx, mirror).await
}

/// The cached `maps` text and resourceVersion of the ConfigMap, if it exists.
fn cached_maps(ctx: &Context) -> Option<(String, String)> {
    let store = ctx.stores.imageswap.as_ref()?;
    let config_map = store.state().into_iter().next()?;
    let maps = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(IMAGESWAP_MAPS_KEY))
        .cloned()
        .unwrap_or_default();
    Some((maps, config_map.resource_version().unwrap_or_default()))
}

/// Reads the ConfigMap fresh, applies `change`, and writes it back with optimistic concurrency
/// (creating it when missing); records the resourceVersion written.
async fn edit(ctx: &Context, change: MapEdit<'_>) -> Result<(), Error> {
    let namespace = ctx.settings.imageswap_namespace();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let _guard = ctx.imageswap_lock.lock().await;
    let action = format!("updating ConfigMap {namespace}/{IMAGESWAP_CONFIG_MAP}");
    for _ in 0..CONFLICT_RETRIES {
        let live = api
            .get_opt(IMAGESWAP_CONFIG_MAP)
            .await
            .map_err(Error::kube(action.clone()))?;
        let current = live
            .as_ref()
            .and_then(|cm| cm.data.as_ref())
            .and_then(|data| data.get(IMAGESWAP_MAPS_KEY))
            .cloned()
            .unwrap_or_default();
        let wanted = edit_maps(&current, change);
        if wanted == current {
            if let Some(live) = &live {
                record_baseline(ctx, &live.resource_version().unwrap_or_default())?;
            }
            return Ok(());
        }
        if change.line.is_none() && live.is_none() {
            return Ok(());
        }
        ctx.metrics.api_write("ConfigMap");
        let written = match live {
            Some(mut config_map) => {
                config_map
                    .data
                    .get_or_insert_with(BTreeMap::new)
                    .insert(IMAGESWAP_MAPS_KEY.into(), wanted);
                config_map.metadata.managed_fields = None;
                api.replace(IMAGESWAP_CONFIG_MAP, &PostParams::default(), &config_map)
                    .await
            }
            None => {
                let config_map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(IMAGESWAP_CONFIG_MAP.into()),
                        namespace: Some(namespace.to_owned()),
                        ..ObjectMeta::default()
                    },
                    data: Some(BTreeMap::from([(IMAGESWAP_MAPS_KEY.into(), wanted)])),
                    ..ConfigMap::default()
                };
                api.create(&PostParams::default(), &config_map).await
            }
        };
        match written {
            Ok(config_map) => {
                let version = config_map.resource_version().unwrap_or_default();
                return record(ctx, &version);
            }
            Err(err) if is_conflict(&err) => continue,
            Err(err) => return Err(Error::kube(action)(err)),
        }
    }
    Err(Error::GaveUp {
        action,
        message: format!(
            "the ConfigMap changed {CONFLICT_RETRIES} times while it was being edited"
        ),
    })
}

async fn add_finalizer(ctx: &Context, mirror: &StoredMirror) -> Result<(), Failure> {
    if mirror.finalizers().iter().any(|f| f == IMAGESWAP_FINALIZER) {
        return Ok(());
    }
    let mut finalizers = mirror.finalizers().to_vec();
    finalizers.push(IMAGESWAP_FINALIZER.into());
    patch_finalizers(ctx, mirror, finalizers)
        .await
        .map_err(Failure::api(format!(
            "adding a finalizer to RegistryMirror {}",
            mirror.name_any()
        )))
}

async fn remove_finalizer(ctx: &Context, mirror: &StoredMirror) -> Result<(), Error> {
    let finalizers: Vec<String> = mirror
        .finalizers()
        .iter()
        .filter(|f| *f != IMAGESWAP_FINALIZER)
        .cloned()
        .collect();
    match patch_finalizers(ctx, mirror, finalizers).await {
        Ok(()) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!(
                "removing the finalizer of RegistryMirror {}",
                mirror.name_any()
            ),
            source,
        }),
    }
}

/// Replaces the finalizer list, guarded by the resourceVersion it was computed from.
async fn patch_finalizers(
    ctx: &Context,
    mirror: &StoredMirror,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let api: Api<StoredMirror> = Api::all(ctx.client.clone());
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": mirror.meta().resource_version,
        }
    });
    ctx.metrics.api_write("RegistryMirror");
    api.patch(
        &mirror.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
}

/// Records `version` unless this process recorded one already (the first version it sees is
/// the baseline; afterwards only its own writes move it).
fn record_baseline(ctx: &Context, version: &str) -> Result<(), Error> {
    let recorded = *ctx
        .imageswap_recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if recorded || version.is_empty() {
        return Ok(());
    }
    record(ctx, version)
}

fn record(ctx: &Context, version: &str) -> Result<(), Error> {
    write_version(&ctx.settings.map_version_file, version)?;
    *ctx.imageswap_recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = true;
    Ok(())
}

/// Writes the version file atomically (a rename), so a concurrent `--map-check` never reads half.
pub fn write_version(path: &Path, version: &str) -> Result<(), Error> {
    let fail = |source| Error::VersionFile {
        path: path.display().to_string(),
        source,
    };
    let temporary = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(&temporary, version).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

/// The outcome of `--map-check`.
#[derive(Debug, PartialEq, Eq)]
pub enum MapCheck {
    /// The ConfigMap is as this controller last wrote or saw it (or nothing is recorded yet).
    Current(String),
    /// Someone else changed it since (the liveness probe fails; the restart re-reconciles).
    Changed(String),
}

/// `mirror-controller --map-check`: compares the live resourceVersion of imageswap-maps with
/// the one recorded in MAP_VERSION_FILE.
pub async fn map_check(client: Client, settings: &Settings) -> Result<MapCheck, String> {
    if settings.addressing_scheme != AddressingScheme::Services {
        return Err(format!(
            "--map-check only applies to ADDRESSING_SCHEME=services (it is {})",
            settings.addressing_scheme
        ));
    }
    let path = &settings.map_version_file;
    let recorded = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(MapCheck::Current(format!(
                "no version recorded in {} yet: nothing to compare",
                path.display()
            )));
        }
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let namespace = settings.imageswap_namespace();
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let live = api.get_opt(IMAGESWAP_CONFIG_MAP).await.map_err(|err| {
        format!("cannot read ConfigMap {namespace}/{IMAGESWAP_CONFIG_MAP}: {err}")
    })?;
    Ok(match live.and_then(|cm| cm.resource_version()) {
        Some(live) if live == recorded => MapCheck::Current(format!(
            "ConfigMap {namespace}/{IMAGESWAP_CONFIG_MAP} is at resourceVersion {live}, as written by mirror-controller"
        )),
        Some(live) => MapCheck::Changed(format!(
            "ConfigMap {namespace}/{IMAGESWAP_CONFIG_MAP} was changed by someone else: resourceVersion {live}, mirror-controller recorded {recorded}"
        )),
        None => MapCheck::Changed(format!(
            "ConfigMap {namespace}/{IMAGESWAP_CONFIG_MAP} was deleted; mirror-controller recorded resourceVersion {recorded}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("wharf-version-{}", std::process::id()));
        let path = dir.join("nested/version");
        write_version(&path, "41").expect("written");
        write_version(&path, "42").expect("rewritten");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "42");
        assert!(!path.with_extension("tmp").exists());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}

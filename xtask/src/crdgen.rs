//! `cargo xtask crdgen`: keeps charts/wharf/crds/ equal to what crd-gen prints.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Where Helm takes CRDs from: it installs `crds/` before any template, so custom resources
/// in a release can use them, and never deletes them on uninstall (which would delete user data).
pub fn crds_path() -> PathBuf {
    crate::scripts::repo_root().join("charts/wharf/crds/wharf-crds.yaml")
}

pub fn run(check: bool) -> anyhow::Result<()> {
    let generated = wharf_core::crd::crds_yaml().context("rendering the CRDs as YAML")?;
    let path = crds_path();
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            bail!(
                "{} is stale: the CRD types changed. Run `cargo xtask crdgen` and commit the result.",
                path.display()
            );
        }
        println!("CRDs are current: {}", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, generated).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

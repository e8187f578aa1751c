//! crd-gen: prints the CustomResourceDefinitions of every wharf kind as one YAML stream.

fn main() -> anyhow::Result<()> {
    print!("{}", wharf_core::crd::crds_yaml()?);
    Ok(())
}

//! Labels of an ImageRegistry's children. The selector stays the original's `app: <name>`, so a
//! StatefulSet adopted from the original operator keeps its (immutable) selector.

use std::collections::BTreeMap;

/// Label every child carries naming the component that manages it.
pub const MANAGED_BY: &str = "wharf-registry-controller";

/// The pod selector of the registry's StatefulSet and Service.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), name.to_owned())])
}

/// Labels of every child: the selector plus the recommended `app.kubernetes.io/*` labels.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.extend([
        (
            "app.kubernetes.io/name".to_owned(),
            "imageregistry".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
    ]);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_contain_the_selector() {
        let labels = labels("registry");
        for (key, value) in selector_labels("registry") {
            assert_eq!(labels.get(&key), Some(&value));
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGED_BY);
    }
}

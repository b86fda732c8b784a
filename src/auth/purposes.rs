//! Purposes of use as the identity layer sees them: v3 ActReason codes, judged against the
//! official hierarchy that `consent::purpose` compiles from the HL7 code system.

use crate::consent::purpose::PurposeHierarchy;

/// The catalogue of purposes of use a token may carry.
#[derive(Debug)]
pub struct PurposeCatalog {
    hierarchy: &'static PurposeHierarchy,
    /// Each code's family (itself and its ancestors), computed once: every decision asks.
    families: std::collections::HashMap<String, Vec<String>>,
}

impl PurposeCatalog {
    /// The official v3 ActReason hierarchy.
    pub fn official() -> &'static PurposeCatalog {
        static CATALOG: std::sync::OnceLock<PurposeCatalog> = std::sync::OnceLock::new();
        CATALOG.get_or_init(|| {
            let hierarchy = PurposeHierarchy::official();
            let families = hierarchy
                .codes()
                .map(|code| {
                    let mut family: Vec<String> = hierarchy
                        .codes()
                        .filter(|general| hierarchy.is_a(code, general))
                        .map(str::to_string)
                        .collect();
                    family.sort();
                    (code.to_string(), family)
                })
                .collect();
            PurposeCatalog {
                hierarchy,
                families,
            }
        })
    }

    /// The hierarchy behind the catalogue, for the consent evaluator.
    pub fn hierarchy(&self) -> &'static PurposeHierarchy {
        self.hierarchy
    }

    /// Whether `code` is a selectable (non-abstract) ActReason code.
    pub fn is_known(&self, code: &str) -> bool {
        self.hierarchy.contains(code) && !self.hierarchy.is_abstract(code)
    }

    /// Whether `specific` is `general` or one of its descendants.
    pub fn is_a(&self, specific: &str, general: &str) -> bool {
        self.hierarchy.is_a(specific, general)
    }

    /// `code` and all its ancestors, for policies that ask "is this a kind of research?".
    pub fn family(&self, code: &str) -> &[String] {
        self.families.get(code).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_hierarchy_answers() {
        let c = PurposeCatalog::official();
        assert!(c.is_a("ETREAT", "TREAT") && c.is_a("BTG", "TREAT"));
        assert!(c.is_a("CLINTRCH", "HRESCH") && c.is_a("CLMATTCH", "HPAYMT"));
        assert!(!c.is_a("TREAT", "ETREAT"));
        assert!(c.is_known("TREAT") && !c.is_known("_PurposeOfUse") && !c.is_known("NOPE"));
        let family = c.family("BTG");
        for f in ["BTG", "ETREAT", "TREAT"] {
            assert!(family.contains(&f.to_string()), "{family:?}");
        }
    }
}

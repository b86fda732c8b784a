//! The institution's rules as loaded at start: the Cedar policies and the sensitivity value
//! sets, from `policies.dir` or, when it is empty, the copies built into the binary.

use std::path::Path;

use anyhow::Context;

use crate::config::Settings;
use crate::labels::Labeller;
use crate::policy::PolicyEngine;

/// The loaded rules.
pub struct Institution {
    /// Step 2 of every decision.
    pub policies: PolicyEngine,
    /// Sensitivity labels applied at ingest.
    pub labeller: Labeller,
}

impl std::fmt::Debug for Institution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Institution").finish_non_exhaustive()
    }
}

impl Institution {
    /// Loads and validates the rules; an invalid policy is an error naming file and line.
    pub fn load(settings: &Settings) -> anyhow::Result<Institution> {
        let dir = &settings.policies.dir;
        if dir.as_os_str().is_empty() {
            return Ok(Institution {
                policies: PolicyEngine::builtin().context("the built-in policies")?,
                labeller: Labeller::builtin().context("the built-in label value sets")?,
            });
        }
        Self::load_dir(dir)
    }

    /// Loads the rules of one folder.
    pub fn load_dir(dir: &Path) -> anyhow::Result<Institution> {
        let policies = PolicyEngine::load(dir)
            .map_err(|e| anyhow::anyhow!("policies.dir {}: {e}", dir.display()))?;
        for warning in policies.warnings() {
            tracing::warn!(warning = %warning, "policy validation warning");
        }
        let labels = dir.join("labels");
        let labeller = if labels.is_dir() {
            Labeller::load(&labels).map_err(|e| anyhow::anyhow!("{}: {e}", labels.display()))?
        } else {
            Labeller::builtin()?
        };
        Ok(Institution { policies, labeller })
    }
}

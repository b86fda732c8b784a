//! The secrets and profile that shape what leaves for a researcher.

use crate::deid::{Profile, StudyKey};
use crate::error::DomainError;

/// The secrets and profile that shape what leaves.
pub struct Shaping {
    master: Vec<u8>,
    profile: Profile,
}

impl std::fmt::Debug for Shaping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaping").finish_non_exhaustive()
    }
}

impl Shaping {
    /// Loads (or creates, mode 0600) the de-identification master secret in `key_dir`. Each
    /// study's key derives from it and the study id, so pseudonyms are stable within a study
    /// and unlinkable across studies.
    pub fn open(key_dir: &std::path::Path) -> anyhow::Result<Shaping> {
        let path = key_dir.join("deid-master.key");
        if !path.exists() {
            std::fs::create_dir_all(key_dir)?;
            let mut secret = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .map_err(|_| anyhow::anyhow!("random generator failed"))?;
            crate::tls::write_private(&path, &secret)?;
        }
        Ok(Shaping {
            master: std::fs::read(&path)?,
            profile: Profile::safe_harbor(),
        })
    }

    /// The key of one study (a research client's study, or a Group being exported).
    pub fn study_key(&self, study: &str) -> Result<StudyKey, DomainError> {
        Ok(StudyKey::for_study(&self.master, study)?)
    }

    /// The Safe Harbor profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

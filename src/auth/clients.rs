//! Recipient clients: who they are, what role they play, which keys sign their assertions,
//! and which purposes and resources their registration allows.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use serde::{Deserialize, Serialize};

use super::purposes::PurposeCatalog;
use crate::config::RolePurposes;
use crate::records::validate::is_resource_type;

/// What a recipient does; limits the purposes it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A clinic or clinician's system.
    Clinician,
    /// A research group.
    Researcher,
    /// A disability agency's assessor.
    DisabilityAssessor,
    /// An insurer.
    Insurer,
    /// A system that sends records in.
    DataSource,
}

impl Role {
    /// The snake_case name used in tokens, config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Researcher => "researcher",
            Role::DisabilityAssessor => "disability_assessor",
            Role::Insurer => "insurer",
            Role::DataSource => "data_source",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "clinician" => Role::Clinician,
            "researcher" => Role::Researcher,
            "disability_assessor" => Role::DisabilityAssessor,
            "insurer" => Role::Insurer,
            "data_source" => Role::DataSource,
            _ => return None,
        })
    }

    /// The purposes configured for this role.
    pub fn purposes(self, roles: &RolePurposes) -> &[String] {
        match self {
            Role::Clinician => &roles.clinician,
            Role::Researcher => &roles.researcher,
            Role::DisabilityAssessor => &roles.disability_assessor,
            Role::Insurer => &roles.insurer,
            Role::DataSource => &roles.data_source,
        }
    }
}

/// A registration request (API body and CLI arguments).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Display name of the software.
    pub name: String,
    /// The organisation running it.
    pub organization: String,
    /// Its role.
    pub role: Role,
    /// An inline public JWKS.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Or an https URL serving it.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Purposes the client may ask for; empty means the role's defaults.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Resource types it may reach; empty means all (`*`).
    #[serde(default)]
    pub resources: Vec<String>,
    /// FHIR references the client acts as (`Organization/x`, `Practitioner/y`,
    /// `Group/study`): what a patient's consent names as its actor. Its own `Device/{id}` is
    /// always implied.
    #[serde(default)]
    pub acts_as: Vec<String>,
    /// The purpose of use its tokens get when a token request names none (standard SMART
    /// Backend Services clients send none); must be one its role and purposes allow.
    #[serde(default)]
    pub default_purpose: Option<String>,
}

/// A stored client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Client {
    /// The client id (`iss` and `sub` of its assertions).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Organisation.
    pub organization: String,
    /// Role.
    pub role: Role,
    /// Inline JWKS, if registered so.
    pub jwks: Option<serde_json::Value>,
    /// JWKS URL, if registered so.
    pub jwks_url: Option<String>,
    /// Allowed purposes.
    pub purposes: Vec<String>,
    /// Allowed resource types (`*` for all).
    pub resources: Vec<String>,
    /// Registration time, seconds since the epoch.
    pub created_at: i64,
    /// References the client acts as.
    #[serde(default)]
    pub acts_as: Vec<String>,
    /// The purpose of use of a token request that names none.
    #[serde(default)]
    pub default_purpose: Option<String>,
}

/// The purpose a token is issued for, and whether the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenPurpose {
    /// The v3 ActReason code.
    pub code: String,
    /// Whether the gateway chose it because the request named none.
    pub defaulted: bool,
}

/// Why no purpose could be chosen for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurposeRefusal {
    /// The request named none, and the registration has neither a default nor one purpose.
    #[error(
        "a purpose of use is required: send purpose_of_use=<v3 ActReason code> with the token \
         request, or the hl7-b2b extension in the assertion, or register a default_purpose"
    )]
    Missing,
    /// The purpose is not one the client's role and registration allow.
    #[error("the purpose of use is not allowed for this client")]
    NotAllowed,
}

impl Client {
    /// Whether this client may ask for `purpose`: a known v3 ActReason code that both its
    /// registration and its role's configured purposes cover (the hierarchy counts: a
    /// registration for `TREAT` covers `ETREAT`). The one rule for the token endpoint, the
    /// decisions API, disclosures and access requests.
    pub fn may_use_purpose(
        &self,
        purpose: &str,
        catalog: &PurposeCatalog,
        roles: &RolePurposes,
    ) -> bool {
        catalog.is_known(purpose)
            && self.purposes.iter().any(|p| catalog.is_a(purpose, p))
            && self
                .role
                .purposes(roles)
                .iter()
                .any(|p| catalog.is_a(purpose, p))
    }
}

impl Client {
    /// The purpose a token request gets: the one it names; else the registration's
    /// `default_purpose`; else, when the registration allows exactly one purpose, that one.
    /// Whatever is chosen must pass [`Client::may_use_purpose`]: a default never widens what
    /// the client may ask for, and the patient's consent still decides.
    pub fn purpose_for_token(
        &self,
        asked: Option<&str>,
        catalog: &PurposeCatalog,
        roles: &RolePurposes,
    ) -> Result<ChosenPurpose, PurposeRefusal> {
        let chosen = match asked.filter(|p| !p.is_empty()) {
            Some(code) => ChosenPurpose {
                code: code.to_string(),
                defaulted: false,
            },
            None => {
                let only = match self.purposes.as_slice() {
                    [one] => Some(one),
                    _ => None,
                };
                let code = self
                    .default_purpose
                    .as_ref()
                    .or(only)
                    .ok_or(PurposeRefusal::Missing)?;
                ChosenPurpose {
                    code: code.clone(),
                    defaulted: true,
                }
            }
        };
        if self.may_use_purpose(&chosen.code, catalog, roles) {
            Ok(chosen)
        } else {
            Err(PurposeRefusal::NotAllowed)
        }
    }
}

/// Why a registration is refused; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RegistrationError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> RegistrationError {
    RegistrationError {
        field,
        reason: reason.into(),
    }
}

impl NewClient {
    /// Checks the registration and turns it into a client with a fresh id.
    pub fn validate(
        self,
        roles: &RolePurposes,
        catalog: &PurposeCatalog,
    ) -> Result<Client, RegistrationError> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(refuse("name", "must be 1 to 200 characters"));
        }
        let organization = self.organization.trim().to_string();
        if organization.is_empty() || organization.chars().count() > 200 {
            return Err(refuse("organization", "must be 1 to 200 characters"));
        }
        match (&self.jwks, &self.jwks_url) {
            (Some(jwks), None) => {
                parse_jwks(jwks)?;
            }
            (None, Some(url)) => {
                if !url.starts_with("https://") || url.len() > 2048 {
                    return Err(refuse("jwks_url", "must be an https:// URL"));
                }
            }
            _ => return Err(refuse("jwks", "give exactly one of `jwks` and `jwks_url`")),
        }
        let allowed = self.role.purposes(roles);
        let purposes = if self.purposes.is_empty() {
            allowed.to_vec()
        } else {
            for p in &self.purposes {
                if !catalog.is_known(p) {
                    return Err(refuse(
                        "purposes",
                        format!("`{p}` is not a v3 ActReason purpose of use"),
                    ));
                }
                if !allowed.iter().any(|a| catalog.is_a(p, a)) {
                    return Err(refuse(
                        "purposes",
                        format!("`{p}` is not allowed for the {} role", self.role.as_str()),
                    ));
                }
            }
            self.purposes
        };
        let resources = if self.resources.is_empty() {
            vec!["*".to_string()]
        } else {
            for r in &self.resources {
                if r != "*" && !is_resource_type(r) {
                    return Err(refuse(
                        "resources",
                        format!("`{r}` is not a FHIR R4 resource type"),
                    ));
                }
            }
            self.resources
        };
        for reference in &self.acts_as {
            let valid = reference.split_once('/').is_some_and(|(ty, id)| {
                matches!(
                    ty,
                    "Organization"
                        | "Practitioner"
                        | "PractitionerRole"
                        | "Group"
                        | "CareTeam"
                        | "RelatedPerson"
                ) && crate::records::validate::is_valid_id(id)
            });
            if !valid {
                return Err(refuse(
                    "acts_as",
                    "each entry must be Organization/, Practitioner/, PractitionerRole/, Group/, CareTeam/ or RelatedPerson/ and an id",
                ));
            }
        }
        if let Some(default) = &self.default_purpose {
            let covered = catalog.is_known(default)
                && purposes.iter().any(|p| catalog.is_a(default, p))
                && allowed.iter().any(|a| catalog.is_a(default, a));
            if !covered {
                return Err(refuse(
                    "default_purpose",
                    format!(
                        "`{default}` must be a v3 ActReason code that the client's purposes and \
                         the {} role allow",
                        self.role.as_str()
                    ),
                ));
            }
            if catalog.is_a(default, "ETREAT") {
                return Err(refuse(
                    "default_purpose",
                    "emergency access is never a default: it needs a justification per request",
                ));
            }
        }
        Ok(Client {
            default_purpose: self.default_purpose,
            acts_as: self.acts_as,
            id: uuid::Uuid::now_v7().to_string(),
            name,
            organization,
            role: self.role,
            jwks: self.jwks,
            jwks_url: self.jwks_url,
            purposes,
            resources,
            created_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        })
    }
}

/// Parses a public JWKS: at least one key, public keys only, of a kind SMART allows.
pub fn parse_jwks(value: &serde_json::Value) -> Result<JwkSet, RegistrationError> {
    let set: JwkSet = serde_json::from_value(value.clone())
        .map_err(|_| refuse("jwks", "is not a JSON Web Key Set"))?;
    if set.keys.is_empty() || set.keys.len() > 20 {
        return Err(refuse("jwks", "must hold 1 to 20 keys"));
    }
    let private_members = ["d", "p", "q", "dp", "dq", "qi", "k"];
    for raw in value["keys"].as_array().into_iter().flatten() {
        if private_members.iter().any(|m| raw.get(*m).is_some()) {
            return Err(refuse(
                "jwks",
                "holds private key material; register public keys only",
            ));
        }
    }
    for key in &set.keys {
        key_algorithm(key).ok_or_else(|| {
            refuse(
                "jwks",
                "each key must be RSA (2048 bits or more), EC P-256 or P-384, or Ed25519",
            )
        })?;
    }
    Ok(set)
}

/// The one algorithm a client key may sign with: fixed per key (RFC 8725), from its `alg`
/// when present, else from its type and curve.
pub fn key_algorithm(key: &Jwk) -> Option<Algorithm> {
    let natural = match &key.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            use base64::Engine;
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .ok()?;
            let significant: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
            let bits = significant.len() * 8
                - significant
                    .first()
                    .map_or(8, |b| b.leading_zeros() as usize);
            // ring verifies RSA keys of 2048 to 8192 bits; refuse others at registration.
            if !(2048..=8192).contains(&bits) {
                return None;
            }
            Algorithm::RS384
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match key.common.key_algorithm {
        None => Some(natural),
        Some(KeyAlgorithm::RS384) if natural == Algorithm::RS384 => Some(natural),
        Some(KeyAlgorithm::ES256) if natural == Algorithm::ES256 => Some(natural),
        Some(KeyAlgorithm::ES384) if natural == Algorithm::ES384 => Some(natural),
        Some(KeyAlgorithm::EdDSA) if natural == Algorithm::EdDSA => Some(natural),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roles() -> RolePurposes {
        RolePurposes {
            clinician: vec!["TREAT".into()],
            researcher: vec!["HRESCH".into()],
            disability_assessor: vec!["CLMATTCH".into()],
            insurer: vec!["HPAYMT".into()],
            data_source: vec![],
        }
    }

    fn ed_jwks() -> serde_json::Value {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]})
    }

    fn client(role: Role, purposes: &[&str]) -> NewClient {
        NewClient {
            name: "Clinic".into(),
            organization: "Org".into(),
            role,
            jwks: Some(ed_jwks()),
            jwks_url: None,
            purposes: purposes.iter().map(|p| p.to_string()).collect(),
            resources: vec![],
            acts_as: vec![],
            default_purpose: None,
        }
    }

    #[test]
    fn a_token_gets_the_named_purpose_else_the_default_else_the_only_one() {
        let catalog = PurposeCatalog::official();
        let roles = roles();
        let with = |role, purposes: &[&str], default: Option<&str>| {
            NewClient {
                default_purpose: default.map(str::to_string),
                ..client(role, purposes)
            }
            .validate(&roles, catalog)
            .expect("valid registration")
        };
        let chosen = |code: &str, defaulted| {
            Ok(ChosenPurpose {
                code: code.into(),
                defaulted,
            })
        };
        let cases = [
            // (client, asked, outcome)
            (
                with(Role::Researcher, &["HRESCH"], None),
                None,
                chosen("HRESCH", true),
            ),
            (
                with(Role::Researcher, &[], None),
                Some(""),
                chosen("HRESCH", true),
            ),
            (
                with(Role::Clinician, &["TREAT", "ETREAT"], Some("TREAT")),
                None,
                chosen("TREAT", true),
            ),
            (
                with(Role::Clinician, &["TREAT", "ETREAT"], None),
                None,
                Err(PurposeRefusal::Missing),
            ),
            (
                with(Role::Clinician, &["TREAT", "ETREAT"], Some("TREAT")),
                Some("ETREAT"),
                chosen("ETREAT", false),
            ),
            (
                with(Role::Clinician, &["TREAT"], None),
                Some("HRESCH"),
                Err(PurposeRefusal::NotAllowed),
            ),
            (
                with(Role::Researcher, &["HRESCH"], None),
                Some("NOPE"),
                Err(PurposeRefusal::NotAllowed),
            ),
        ];
        for (i, (client, asked, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                client.purpose_for_token(asked, catalog, &roles),
                expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn a_default_purpose_must_be_allowed_and_never_an_emergency() {
        let catalog = PurposeCatalog::official();
        for (role, purposes, default) in [
            (Role::Clinician, &["TREAT"][..], "HRESCH"),
            (Role::Researcher, &["HRESCH"][..], "NOPE"),
            (Role::Clinician, &["TREAT"][..], "ETREAT"),
            (Role::Clinician, &["ETREAT"][..], "TREAT"),
        ] {
            let err = NewClient {
                default_purpose: Some(default.into()),
                ..client(role, purposes)
            }
            .validate(&roles(), catalog)
            .unwrap_err();
            assert_eq!(err.field, "default_purpose", "{default}");
        }
    }

    #[test]
    fn purposes_are_bounded_by_the_role() {
        let catalog = PurposeCatalog::official();
        let c = client(Role::Clinician, &[])
            .validate(&roles(), catalog)
            .unwrap();
        assert_eq!(c.purposes, vec!["TREAT"]);
        assert_eq!(c.resources, vec!["*"]);
        assert!(
            client(Role::Clinician, &["ETREAT"])
                .validate(&roles(), catalog)
                .is_ok()
        );
        let err = client(Role::Researcher, &["TREAT"])
            .validate(&roles(), catalog)
            .unwrap_err();
        assert_eq!(err.field, "purposes");
        let err = client(Role::Clinician, &["NOPE"])
            .validate(&roles(), catalog)
            .unwrap_err();
        assert_eq!(err.field, "purposes");
    }

    #[test]
    fn keys_must_be_public_and_of_an_allowed_kind() {
        let mut private = ed_jwks();
        private["keys"][0]["d"] = json!("secret");
        assert!(parse_jwks(&private).is_err());
        let hmac = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(parse_jwks(&hmac).is_err());
        let wrong_alg = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "ES256"}]});
        assert!(parse_jwks(&wrong_alg).is_err());
        assert!(parse_jwks(&json!({"keys": []})).is_err());
        assert!(parse_jwks(&ed_jwks()).is_ok());
        let mut both = client(Role::Insurer, &[]);
        both.jwks_url = Some("https://x/jwks".into());
        assert_eq!(
            both.validate(&roles(), PurposeCatalog::official())
                .unwrap_err()
                .field,
            "jwks"
        );
    }
}

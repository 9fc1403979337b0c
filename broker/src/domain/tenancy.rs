//! Tenants, API tokens and who is calling.
//!
//! A token is `pst_<id>_<secret>`: the id finds the record, the secret is compared with the
//! stored SHA-256 in constant time. A token is shown once, stored hashed, scoped to one tenant
//! and one role; revoking it takes effect on the next request. The bootstrap admin token
//! (`POSTERN_ADMIN_TOKEN`, or one printed at first start) is stored the same way under the id
//! `bootstrap`.

use ring::rand::SecureRandom as _;
use serde_json::json;

use crate::model::{DEFAULT_TENANT, Role, Tenant, TokenRecord};

use super::Domain;
use super::error::{DomainError, DomainResult, ErrorKind};

/// The id under which the bootstrap admin token is stored.
pub const BOOTSTRAP_TOKEN_ID: &str = "bootstrap";

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the caller acts for.
    pub tenant: String,
    /// Its role.
    pub role: Role,
    /// `token:<id>`, `cert:<serial>` (a gateway client certificate), `cli` or `system`.
    pub actor_id: String,
}

impl Principal {
    /// The local command line, acting as an operator.
    pub fn cli() -> Self {
        Principal {
            tenant: DEFAULT_TENANT.into(),
            role: Role::Admin,
            actor_id: "cli".into(),
        }
    }

    /// The broker itself (start-up tasks).
    pub fn system() -> Self {
        Principal {
            tenant: DEFAULT_TENANT.into(),
            role: Role::Admin,
            actor_id: "system".into(),
        }
    }

    /// The audit `actor` value.
    pub fn actor(&self) -> String {
        self.actor_id.clone()
    }

    /// Admins of the default tenant operate the whole installation.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Admin && self.tenant == DEFAULT_TENANT
    }

    /// # Errors
    /// Forbidden unless an admin.
    pub fn require_admin(&self) -> DomainResult<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(DomainError::new(
                ErrorKind::Forbidden,
                format!(
                    "role {} may not do this; admin required",
                    self.role.as_str()
                ),
            ))
        }
    }

    /// # Errors
    /// Forbidden unless an operator.
    pub fn require_operator(&self) -> DomainResult<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(DomainError::new(
                ErrorKind::Forbidden,
                "only admins of the default tenant may do this",
            ))
        }
    }

    /// The tenant to act on: the caller's own, or (operators only) the one named.
    ///
    /// # Errors
    /// Forbidden when a non-operator names another tenant.
    pub fn scope(&self, requested: Option<&str>) -> DomainResult<String> {
        match requested {
            None => Ok(self.tenant.clone()),
            Some(t) if t == self.tenant => Ok(self.tenant.clone()),
            Some(t) if self.is_operator() => Ok(t.to_owned()),
            Some(_) => Err(DomainError::new(
                ErrorKind::Forbidden,
                "a token may act only for its own tenant",
            )),
        }
    }
}

/// A newly created token: the secret is in `token` and is shown only now.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The whole bearer token.
    pub token: String,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random_bytes<const N: usize>() -> DomainResult<[u8; N]> {
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| DomainError::internal("system rng failed"))?;
    Ok(b)
}

/// Checks a tenant id: `[a-z0-9-]`, 1 to 63 characters, not starting or ending with `-`.
///
/// # Errors
/// Malformed.
pub fn check_tenant_id(id: &str) -> DomainResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::new(
            ErrorKind::Malformed,
            "tenant id must be 1-63 characters of a-z, 0-9 and -",
        ))
    }
}

impl Domain {
    /// Makes sure the default tenant exists (first start).
    ///
    /// # Errors
    /// Store failures.
    pub async fn ensure_default_tenant(&self) -> DomainResult<()> {
        if self.store.tenant(DEFAULT_TENANT)?.is_some() {
            return Ok(());
        }
        let who = Principal::system();
        let t = Tenant {
            id: DEFAULT_TENANT.into(),
            name: "Default tenant".into(),
            created_at: self.clock.now(),
        };
        let draft = self.draft(
            &who,
            DEFAULT_TENANT,
            "tenant.create",
            DEFAULT_TENANT,
            json!({}),
        );
        match self.write(move |s| s.insert_tenant(&t, draft)).await {
            Ok(_) | Err(crate::store::StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a tenant.
    ///
    /// # Errors
    /// Forbidden unless an operator; Malformed id; Conflict when it exists.
    pub async fn create_tenant(
        &self,
        who: &Principal,
        id: &str,
        name: &str,
    ) -> DomainResult<Tenant> {
        who.require_operator()?;
        check_tenant_id(id)?;
        if name.len() > 200 {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "name longer than 200 characters",
            ));
        }
        let t = Tenant {
            id: id.into(),
            name: if name.is_empty() {
                id.into()
            } else {
                name.into()
            },
            created_at: self.clock.now(),
        };
        let draft = self.draft(who, id, "tenant.create", id, json!({ "name": t.name }));
        let stored = t.clone();
        self.write(move |s| s.insert_tenant(&stored, draft))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => {
                    DomainError::new(ErrorKind::Conflict, format!("tenant {id} exists"))
                }
                other => other.into(),
            })?;
        Ok(t)
    }

    /// # Errors
    /// NotFound when there is no tenant `id`.
    pub fn require_tenant(&self, id: &str) -> DomainResult<()> {
        if self.store.tenant(id)?.is_none() {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no tenant {id}"),
            ));
        }
        Ok(())
    }

    /// Every tenant (operators) or the caller's own.
    ///
    /// # Errors
    /// Forbidden unless an admin.
    pub fn tenants(&self, who: &Principal) -> DomainResult<Vec<Tenant>> {
        who.require_admin()?;
        let all = self.store.tenants()?;
        Ok(all
            .into_iter()
            .filter(|t| who.is_operator() || t.id == who.tenant)
            .collect())
    }

    /// Creates an API token for a tenant and role.
    ///
    /// # Errors
    /// Forbidden (not an admin, or another tenant), NotFound (no such tenant), Malformed label.
    pub async fn create_token(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        role: Role,
        label: &str,
    ) -> DomainResult<NewToken> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        if self.store.tenant(&tenant)?.is_none() {
            return Err(DomainError::new(
                ErrorKind::NotFound,
                format!("no tenant {tenant}"),
            ));
        }
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(DomainError::new(
                ErrorKind::Malformed,
                "label must be up to 200 printable characters",
            ));
        }
        let id = hex::encode(random_bytes::<8>()?);
        let secret = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            random_bytes::<32>()?,
        );
        let record = TokenRecord {
            id: id.clone(),
            tenant: tenant.clone(),
            role,
            secret_sha256: sha256_hex(secret.as_bytes()),
            label: label.to_owned(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let draft = self.draft(
            who,
            &tenant,
            "token.create",
            &id,
            json!({ "role": role.as_str(), "label": label }),
        );
        let stored = record.clone();
        self.write(move |s| s.insert_token(&stored, draft)).await?;
        Ok(NewToken {
            record,
            token: format!("pst_{id}_{secret}"),
        })
    }

    /// The tokens of a tenant (without secrets; only hashes are stored anyway).
    ///
    /// # Errors
    /// Forbidden.
    pub fn tokens(&self, who: &Principal, tenant: Option<&str>) -> DomainResult<Vec<TokenRecord>> {
        who.require_admin()?;
        let tenant = who.scope(tenant)?;
        Ok(self.store.tokens(&tenant)?)
    }

    /// Revokes a token; from the next request on it authenticates nothing.
    ///
    /// # Errors
    /// Forbidden, NotFound (also for another tenant's token), AlreadyRevoked.
    pub async fn revoke_token(&self, who: &Principal, id: &str) -> DomainResult<TokenRecord> {
        who.require_admin()?;
        let Some(existing) = self.store.token(id)? else {
            return Err(DomainError::new(ErrorKind::NotFound, "no such token"));
        };
        if !who.is_operator() && existing.tenant != who.tenant {
            return Err(DomainError::new(ErrorKind::NotFound, "no such token"));
        }
        let draft = self.draft(who, &existing.tenant, "token.revoke", id, json!({}));
        let (id, at) = (id.to_owned(), self.clock.now());
        let rec = self.write(move |s| s.revoke_token(&id, at, draft)).await?;
        Ok(rec)
    }

    /// Authenticates a bearer token.
    ///
    /// # Errors
    /// Unauthorized for anything but a live token (the message does not say which part failed).
    pub fn authenticate(&self, bearer: &str) -> DomainResult<Principal> {
        let denied = || DomainError::new(ErrorKind::Unauthorized, "invalid or revoked token");
        if bearer.is_empty() || bearer.len() > 512 {
            return Err(denied());
        }
        let (id, secret) = match bearer.strip_prefix("pst_").and_then(|r| r.split_once('_')) {
            Some((id, secret)) => (id, secret),
            None => (BOOTSTRAP_TOKEN_ID, bearer),
        };
        let Some(rec) = self.store.token(id)? else {
            // spend the same hashing work as a real check
            let _ = sha256_hex(secret.as_bytes());
            return Err(denied());
        };
        let presented = sha256_hex(secret.as_bytes());
        if !ct_eq(presented.as_bytes(), rec.secret_sha256.as_bytes()) || rec.revoked_at.is_some() {
            return Err(denied());
        }
        Ok(Principal {
            tenant: rec.tenant,
            role: rec.role,
            actor_id: format!("token:{}", rec.id),
        })
    }

    /// Installs the bootstrap admin token: `from_env` when given (replacing a different one),
    /// otherwise a new random one when none exists. Returns the token when it was generated
    /// now (to be printed once), `None` otherwise.
    ///
    /// # Errors
    /// Malformed when `from_env` is shorter than 16 characters; store failures.
    pub async fn ensure_bootstrap_token(
        &self,
        from_env: Option<&str>,
    ) -> DomainResult<Option<String>> {
        let existing = self.store.token(BOOTSTRAP_TOKEN_ID)?;
        let (secret, generated) = match from_env {
            Some(t) => {
                if t.len() < 16 {
                    return Err(DomainError::new(
                        ErrorKind::Malformed,
                        "POSTERN_ADMIN_TOKEN must be at least 16 characters",
                    ));
                }
                if existing.as_ref().is_some_and(|r| {
                    r.revoked_at.is_none() && r.secret_sha256 == sha256_hex(t.as_bytes())
                }) {
                    return Ok(None);
                }
                (t.to_owned(), false)
            }
            None => {
                if existing.is_some() {
                    return Ok(None);
                }
                let s = base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    random_bytes::<32>()?,
                );
                (s, true)
            }
        };
        let who = Principal::system();
        if existing.is_some() {
            // replaced by a different POSTERN_ADMIN_TOKEN: the old one stops working
            let draft = self.draft(
                &who,
                DEFAULT_TENANT,
                "token.replace",
                BOOTSTRAP_TOKEN_ID,
                json!({}),
            );
            self.store
                .revoke_token(BOOTSTRAP_TOKEN_ID, self.clock.now(), draft)
                .ok();
        }
        let record = TokenRecord {
            id: BOOTSTRAP_TOKEN_ID.into(),
            tenant: DEFAULT_TENANT.into(),
            role: Role::Admin,
            secret_sha256: sha256_hex(secret.as_bytes()),
            label: "bootstrap admin token".into(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let draft = self.draft(
            &who,
            DEFAULT_TENANT,
            "token.create",
            BOOTSTRAP_TOKEN_ID,
            json!({ "role": "admin", "source": if generated { "generated" } else { "POSTERN_ADMIN_TOKEN" } }),
        );
        self.write(move |s| s.put_token(&record, draft)).await?;
        Ok(generated.then_some(secret))
    }
}

impl Domain {
    /// Authenticates a TLS client certificate (DER, as the handshake presented it) as a routing
    /// gateway. The certificate must be one postern issued (its serial finds a stored record
    /// whose DER is byte for byte the one presented), of the `gateway-client` profile, not
    /// revoked and inside its validity at this moment. Its tenant comes from the record; the
    /// principal has role `gateway` and actor `cert:<serial>`. The check runs on every request,
    /// so a revocation refuses the next request, also on a connection opened before it.
    ///
    /// # Errors
    /// Unauthorized naming why the certificate is refused; store failures.
    pub fn authenticate_certificate(&self, der: &[u8]) -> DomainResult<Principal> {
        use x509_parser::prelude::{FromDer as _, X509Certificate};
        let refused = |why: String| {
            DomainError::new(
                ErrorKind::Unauthorized,
                format!("client certificate refused: {why}"),
            )
        };
        let not_ours = || refused("not issued by this postern".into());
        let serial = match X509Certificate::from_der(der) {
            Ok(([], cert)) => hex::encode(cert.raw_serial()),
            _ => return Err(refused("not a DER X.509 certificate".into())),
        };
        let Some(rec) = self.store.certificate(&serial)? else {
            return Err(not_ours());
        };
        let stored =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &rec.der_b64)
                .map_err(|e| DomainError::internal(format!("stored certificate {serial}: {e}")))?;
        if !ct_eq(&stored, der) {
            return Err(not_ours());
        }
        if rec.profile != super::gateway_cert::GATEWAY_CLIENT_PROFILE {
            return Err(refused(format!(
                "a {} certificate is not a gateway certificate",
                rec.profile
            )));
        }
        if let crate::model::CertificateStatus::Revoked { .. } = rec.status {
            return Err(refused(format!("certificate {serial} is revoked")));
        }
        let now = self.clock.now();
        if now > rec.not_after {
            return Err(refused(format!("certificate {serial} has expired")));
        }
        if now < rec.not_before {
            return Err(refused(format!("certificate {serial} is not valid yet")));
        }
        Ok(Principal {
            tenant: rec.tenant,
            role: Role::Gateway,
            actor_id: format!("cert:{serial}"),
        })
    }
}

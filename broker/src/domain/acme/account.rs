//! Accounts: creation (with optional external account binding), lookup by key, update,
//! deactivation and key rollover.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use postern_certs::jws::Jwk;

use crate::store::{DocKind, DocTxn};

use super::error::{AcmeError, AcmeProblem, AcmeResult};
use super::model::{Account, AccountStatus, EabKey};
use super::{Acme, Authed, Base, decode, encode, jws, random_id};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    terms_of_service_agreed: Option<bool>,
    #[serde(default)]
    only_return_existing: bool,
    #[serde(default)]
    external_account_binding: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct AccountUpdate {
    #[serde(default)]
    contact: Option<Vec<String>>,
    #[serde(default)]
    status: Option<String>,
}

fn key_index(provisioner: &str, thumbprint: &str) -> String {
    format!("{provisioner}/{thumbprint}")
}

fn check_contacts(contact: &[String]) -> AcmeResult<()> {
    if contact.len() > 4 {
        return Err(AcmeError::malformed("at most 4 contacts"));
    }
    for c in contact {
        // RFC 8555 §7.3: another scheme is unsupportedContact, a bad mailto: invalidContact
        let Some(a) = c.strip_prefix("mailto:") else {
            return Err(AcmeError::new(
                AcmeProblem::UnsupportedContact,
                format!("contact {c:?} is not a mailto: URL"),
            ));
        };
        let ok = a.len() < 254
            && a.contains('@')
            && !a.contains(',')
            && !a.contains('?')
            && !a.chars().any(char::is_control);
        if !ok {
            return Err(AcmeError::new(
                AcmeProblem::InvalidContact,
                format!("contact {c:?} is not a single mailto: address"),
            ));
        }
    }
    Ok(())
}

impl Acme {
    /// `newAccount`: creates an account for the header's key, or finds the existing one.
    /// Returns the account and whether it was created.
    ///
    /// # Errors
    /// `malformed` (signed with kid, bad contact), `accountDoesNotExist` (onlyReturnExisting),
    /// `externalAccountRequired`, `unauthorized` (bad binding).
    pub async fn new_account(
        &self,
        provisioner: &str,
        base: &Base,
        authed: &Authed,
    ) -> AcmeResult<(Account, bool)> {
        let p = self.provisioner(provisioner)?;
        let jws::Signer::Key(jwk) = &authed.req.signer else {
            return Err(AcmeError::malformed("newAccount must be signed with a jwk"));
        };
        let body: NewAccount = authed.req.json()?;
        let thumbprint = jwk.thumbprint();
        let index = key_index(provisioner, &thumbprint);
        if let Some(id) = self.domain.store().doc(DocKind::AcmeAccountKey, &index)? {
            let id = String::from_utf8(id).map_err(AcmeError::internal)?;
            if let Some((acct, _)) = self.load::<Account>(DocKind::AcmeAccount, &id)? {
                // the key of a deactivated account opens no new one either (RFC 8555 §7.3.6)
                if acct.status != AccountStatus::Valid {
                    return Err(AcmeError::unauthorized(
                        format!("the account of this key is {:?}", acct.status).to_lowercase(),
                    )
                    .with_status(401));
                }
                return Ok((acct, false));
            }
        }
        if body.only_return_existing {
            return Err(AcmeError::new(
                AcmeProblem::AccountDoesNotExist,
                "no account for this key",
            ));
        }
        check_contacts(&body.contact)?;
        if body.terms_of_service_agreed == Some(false) {
            return Err(AcmeError::malformed("termsOfServiceAgreed is false"));
        }
        let id = random_id()?;
        let mut txn = DocTxn::new();
        let mut eab_kid = None;
        let mut device = None;
        match (&body.external_account_binding, p.settings.require_eab) {
            (None, true) => {
                return Err(AcmeError::new(
                    AcmeProblem::ExternalAccountRequired,
                    "this provisioner requires external account binding",
                ));
            }
            (None, false) => {}
            (Some(eab), _) => {
                let (key, old) = self.check_eab(provisioner, base, jwk, eab)?;
                let mut bound = key.clone();
                bound.bound_to = Some(id.clone());
                txn = txn.unchanged(DocKind::AcmeEab, key.kid.clone(), old).put(
                    DocKind::AcmeEab,
                    key.kid.clone(),
                    encode(&bound)?,
                );
                eab_kid = Some(key.kid);
                device = key.device;
            }
        }
        let acct = Account {
            id: id.clone(),
            provisioner: provisioner.to_owned(),
            tenant: p.settings.tenant.clone(),
            status: AccountStatus::Valid,
            jwk: strip(jwk),
            thumbprint: thumbprint.clone(),
            contact: body.contact,
            eab_kid: eab_kid.clone(),
            device: device.clone(),
            created_at: self.now(),
        };
        let draft = self.domain.draft(
            &self.principal(p, &id),
            &p.settings.tenant,
            "acme.account.create",
            &id,
            json!({ "provisioner": provisioner, "key_thumbprint": thumbprint, "eab_kid": eab_kid, "device": device }),
        );
        let txn = txn
            .absent(DocKind::AcmeAccountKey, index.clone())
            .put(DocKind::AcmeAccountKey, index, id.clone().into_bytes())
            .put(DocKind::AcmeAccount, id, encode(&acct)?)
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::malformed(
                "the account key or binding was used concurrently; try again",
            ));
        }
        Ok((acct, true))
    }

    /// Checks an external account binding (RFC 8555 §7.3.4): HS256 over the account key, by an
    /// unused key of this provisioner.
    fn check_eab(
        &self,
        provisioner: &str,
        base: &Base,
        jwk: &Jwk,
        eab: &serde_json::Value,
    ) -> AcmeResult<(EabKey, Vec<u8>)> {
        let bad = |m: &str| AcmeError::unauthorized(format!("external account binding: {m}"));
        let (header, payload, signing_input, mac) = jws::parse_inner(eab)?;
        // not badSignatureAlgorithm, whose problem lists the account key algorithms
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(bad("the MAC must be HS256"));
        }
        if header.get("url").and_then(|u| u.as_str())
            != Some(base.url(provisioner, "new-account").as_str())
        {
            return Err(bad("url is not this newAccount URL"));
        }
        if header.get("nonce").is_some() {
            return Err(bad("must not carry a nonce"));
        }
        let kid = header
            .get("kid")
            .and_then(|k| k.as_str())
            .ok_or_else(|| bad("no kid"))?;
        let (key, old): (EabKey, Vec<u8>) = self
            .load(DocKind::AcmeEab, kid)?
            .ok_or_else(|| bad("unknown kid"))?;
        if key.provisioner != provisioner {
            return Err(bad("unknown kid"));
        }
        if key.bound_to.is_some() {
            return Err(bad("the key was used already"));
        }
        let inner: Jwk =
            serde_json::from_slice(&payload).map_err(|_| bad("payload is not a JWK"))?;
        if inner.thumbprint() != jwk.thumbprint() {
            return Err(bad("payload is not the account key"));
        }
        let secret = URL_SAFE_NO_PAD
            .decode(&key.hmac_key)
            .map_err(AcmeError::internal)?;
        ring::hmac::verify(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            signing_input.as_bytes(),
            &mac,
        )
        .map_err(|_| bad("the MAC does not verify"))?;
        Ok((key, old))
    }

    /// Creates an external account binding key for a provisioner (admin API). Returns the key
    /// id and the HMAC key (base64url), shown once.
    ///
    /// # Errors
    /// 404 for an unknown provisioner; `unauthorized` for another tenant's.
    pub async fn create_eab(
        &self,
        who: &crate::domain::Principal,
        provisioner: &str,
    ) -> AcmeResult<(String, String)> {
        who.require_admin()?;
        let p = self.provisioner(provisioner)?;
        if !who.is_operator() && who.tenant != p.settings.tenant {
            return Err(AcmeError::not_found(format!("provisioner {provisioner:?}")));
        }
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| AcmeError::internal("system random source failed"))?;
        let key = EabKey {
            kid: format!("eab_{}", random_id()?),
            provisioner: provisioner.to_owned(),
            tenant: p.settings.tenant.clone(),
            hmac_key: URL_SAFE_NO_PAD.encode(secret),
            bound_to: None,
            device: None,
            created_at: self.now(),
        };
        let draft = self.domain.draft(
            who,
            &p.settings.tenant,
            "acme.eab.create",
            &key.kid,
            json!({ "provisioner": provisioner }),
        );
        let txn = DocTxn::new()
            .absent(DocKind::AcmeEab, key.kid.clone())
            .put(DocKind::AcmeEab, key.kid.clone(), encode(&key)?)
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::internal("eab key id collision"));
        }
        Ok((key.kid, key.hmac_key))
    }

    /// POST to the account URL: POST-as-GET, contact update, or deactivation.
    ///
    /// # Errors
    /// `unauthorized` for another account's URL, `malformed`.
    pub async fn update_account(
        &self,
        provisioner: &str,
        authed: &Authed,
        id: &str,
    ) -> AcmeResult<Account> {
        let p = self.provisioner(provisioner)?;
        let acct = authed.account()?;
        if acct.id != id {
            return Err(AcmeError::unauthorized("this is another account's URL"));
        }
        if authed.req.is_post_as_get() {
            return Ok(acct.clone());
        }
        let upd: AccountUpdate = authed.req.json()?;
        let (current, old): (Account, Vec<u8>) = self
            .load(DocKind::AcmeAccount, id)?
            .ok_or_else(|| AcmeError::new(AcmeProblem::AccountDoesNotExist, "no such account"))?;
        let mut next = current.clone();
        if let Some(c) = upd.contact {
            check_contacts(&c)?;
            next.contact = c;
        }
        let mut action = "acme.account.update";
        match upd.status.as_deref() {
            None => {}
            Some("deactivated") => {
                next.status = AccountStatus::Deactivated;
                action = "acme.account.deactivate";
            }
            Some(s) => {
                return Err(AcmeError::malformed(format!(
                    "status {s:?} cannot be set; only \"deactivated\""
                )));
            }
        }
        if next == current {
            return Ok(current);
        }
        let draft = self.domain.draft(
            &self.principal(p, id),
            &p.settings.tenant,
            action,
            id,
            json!({}),
        );
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAccount, id.to_owned(), old)
            .put(DocKind::AcmeAccount, id.to_owned(), encode(&next)?)
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::malformed(
                "the account changed concurrently; try again",
            ));
        }
        Ok(next)
    }

    /// `keyChange` (RFC 8555 §7.3.5): the outer JWS by the account key, the inner by the new
    /// key, naming the account and the old key.
    ///
    /// # Errors
    /// `malformed` (inner JWS, url, account), `unauthorized` (oldKey), and `malformed` with
    /// 409 when the new key already has an account.
    pub async fn key_change(
        &self,
        provisioner: &str,
        base: &Base,
        authed: &Authed,
    ) -> AcmeResult<Account> {
        let p = self.provisioner(provisioner)?;
        let acct = authed.account()?.clone();
        let outer: serde_json::Value = authed.req.json()?;
        let (header, payload, signing_input, sig) = jws::parse_inner(&outer)?;
        let inner_jwk: Jwk = serde_json::from_value(header.get("jwk").cloned().unwrap_or_default())
            .map_err(|_| AcmeError::malformed("the inner JWS must carry a jwk"))?;
        if header.get("kid").is_some() || header.get("nonce").is_some() {
            return Err(AcmeError::malformed(
                "the inner JWS must not carry kid or nonce",
            ));
        }
        if header.get("url").and_then(|u| u.as_str()) != Some(authed.req.url.as_str()) {
            return Err(AcmeError::malformed(
                "the inner JWS url differs from the outer",
            ));
        }
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .and_then(|a| postern_certs::jws::JwsAlg::from_header_value(a).ok())
            .filter(|a| jws::ALGORITHMS.contains(&a.as_str()))
            .ok_or_else(|| {
                AcmeError::new(AcmeProblem::BadSignatureAlgorithm, "inner alg not accepted")
            })?;
        inner_jwk
            .verify(alg, signing_input.as_bytes(), &sig)
            .map_err(|_| AcmeError::malformed("the inner JWS signature does not verify"))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct KeyChange {
            account: String,
            old_key: Jwk,
        }
        let kc: KeyChange = serde_json::from_slice(&payload)
            .map_err(|e| AcmeError::malformed(format!("the inner payload: {e}")))?;
        if kc.account != base.url(provisioner, &format!("account/{}", acct.id)) {
            return Err(AcmeError::malformed(
                "the inner payload names another account",
            ));
        }
        if kc.old_key.thumbprint() != acct.thumbprint {
            return Err(AcmeError::unauthorized("oldKey is not the account's key"));
        }
        let new_thumb = inner_jwk.thumbprint();
        if new_thumb == acct.thumbprint {
            return Err(AcmeError::malformed("the new key is the old key"));
        }
        let (current, old): (Account, Vec<u8>) = self
            .load(DocKind::AcmeAccount, &acct.id)?
            .ok_or_else(|| AcmeError::new(AcmeProblem::AccountDoesNotExist, "no such account"))?;
        let new_index = key_index(provisioner, &new_thumb);
        if let Some(other) = self
            .domain
            .store()
            .doc(DocKind::AcmeAccountKey, &new_index)?
        {
            // RFC 8555 §7.3.5: 409, naming that account
            let other = base.url(
                provisioner,
                &format!("account/{}", String::from_utf8_lossy(&other)),
            );
            return Err(
                AcmeError::malformed(format!("the new key is the key of account {other}"))
                    .with_status(409),
            );
        }
        let mut next = current;
        next.jwk = strip(&inner_jwk);
        next.thumbprint = new_thumb.clone();
        let draft = self.domain.draft(
            &self.principal(p, &acct.id),
            &p.settings.tenant,
            "acme.account.key_change",
            &acct.id,
            json!({ "old_thumbprint": acct.thumbprint, "new_thumbprint": new_thumb }),
        );
        let txn = DocTxn::new()
            .unchanged(DocKind::AcmeAccount, acct.id.clone(), old)
            .absent(DocKind::AcmeAccountKey, new_index.clone())
            .put(DocKind::AcmeAccount, acct.id.clone(), encode(&next)?)
            .put(
                DocKind::AcmeAccountKey,
                new_index,
                acct.id.clone().into_bytes(),
            )
            .delete(
                DocKind::AcmeAccountKey,
                key_index(provisioner, &acct.thumbprint),
            )
            .audit(draft);
        if !self.commit(txn).await? {
            return Err(AcmeError::malformed(
                "the new key belongs to another account, or the account changed concurrently",
            ));
        }
        Ok(next)
    }

    /// The account's order URLs.
    ///
    /// # Errors
    /// `unauthorized` for another account.
    pub fn account_orders(
        &self,
        provisioner: &str,
        authed: &Authed,
        id: &str,
    ) -> AcmeResult<Vec<String>> {
        let acct = authed.account()?;
        if acct.id != id {
            return Err(AcmeError::unauthorized("this is another account's URL"));
        }
        let mut out = Vec::new();
        for (oid, b) in self
            .domain
            .store()
            .docs(DocKind::AcmeOrder, "", usize::MAX)?
        {
            let o: super::Order = decode("order", &b)?;
            if o.account == id && o.provisioner == provisioner {
                out.push(oid);
            }
        }
        Ok(out)
    }
}

/// The key without `kid`, `alg`, `use` (kept as the account's public key).
fn strip(j: &Jwk) -> Jwk {
    let mut k = j.clone();
    k.kid = None;
    k
}

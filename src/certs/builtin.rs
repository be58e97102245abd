//! Built-in certificates: credgate keeps its own CA and serving certificate in
//! a Secret, publishes the CA as the `caBundle` of its webhook configurations,
//! and renews both before they expire.
//!
//! The Secret is the source of truth, so replicas agree: each replica reads it,
//! at most one wins the optimistic-concurrency write of a change, and every
//! replica writes the serving pair to its certificate folder, which the server
//! reloads on the next handshake.
//!
//! A CA is replaced in two steps so the API server never sees a certificate
//! it does not trust: first the next CA joins the bundle (serving continues
//! with the old one); after an overlap the serving certificate is issued by the
//! next CA, which becomes current; the old CA leaves the bundle after another
//! overlap, once every replica serves the new certificate.

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::certs::{self, CertError, Pair};

/// Where the certificates live and how long they last.
#[derive(Clone, Debug)]
pub struct Options {
    pub namespace: String,
    pub secret: String,
    /// Validating and mutating webhook configurations whose `caBundle` credgate keeps.
    pub webhook_configs: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    /// How often the Secret is read; also the unit of the overlaps.
    pub interval: Duration,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Options {
    /// Time every replica needs to see a change of the Secret (and the API server one of the bundle).
    fn overlap(&self) -> time::Duration {
        time::Duration::try_from(self.interval * 3).unwrap_or(time::Duration::MINUTE)
    }
}

const NEXT_SINCE: &str = "credgate.run.ai/next-ca-since";
const PREVIOUS_UNTIL: &str = "credgate.run.ai/previous-ca-until";

/// What the Secret holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub ca: Option<Pair>,
    pub serving: Option<Pair>,
    /// The CA that will replace `ca`, and since when it is in the bundle.
    pub next: Option<(Pair, OffsetDateTime)>,
    /// The CA `ca` replaced, kept in the bundle until the time given.
    pub previous: Option<(String, OffsetDateTime)>,
}

/// One change of the stored certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Keep,
    /// Nothing usable stored: a new CA and serving certificate.
    Create,
    /// The CA nears its end: the next CA joins the bundle.
    StageNextCa,
    /// The next CA has been trusted for an overlap: it issues the serving certificate and becomes current.
    PromoteNextCa,
    /// Every replica serves the new CA's certificate: the old CA leaves the bundle.
    DropPreviousCa,
    /// The serving certificate nears its end: reissued by the current CA.
    RenewServing,
}

fn remaining(cert: &str, now: OffsetDateTime) -> Option<time::Duration> {
    certs::not_after(cert).map(|t| t - now)
}

fn third(d: Duration) -> time::Duration {
    time::Duration::try_from(d / 3).unwrap_or(time::Duration::ZERO)
}

/// The next change to make at `now` (one at a time, so the bundle always
/// changes before the certificate that needs it).
pub fn next_step(stored: &Stored, now: OffsetDateTime, options: &Options) -> Step {
    let (Some(ca), Some(serving)) = (&stored.ca, &stored.serving) else {
        return Step::Create;
    };
    let (Some(ca_left), Some(serving_left)) =
        (remaining(&ca.cert, now), remaining(&serving.cert, now))
    else {
        return Step::Create;
    };
    if ca_left <= time::Duration::ZERO {
        return Step::Create;
    }
    if let Some((_, until)) = &stored.previous
        && now >= *until
    {
        return Step::DropPreviousCa;
    }
    if let Some((_, since)) = &stored.next
        && now >= *since + options.overlap()
    {
        return Step::PromoteNextCa;
    }
    if stored.next.is_none() && stored.previous.is_none() && ca_left < third(options.ca_validity) {
        return Step::StageNextCa;
    }
    if serving_left < third(options.cert_validity) {
        return Step::RenewServing;
    }
    Step::Keep
}

/// Applies `step`, issuing what it needs.
pub fn apply(
    step: Step,
    stored: &Stored,
    now: OffsetDateTime,
    options: &Options,
) -> Result<Stored, CertError> {
    let (dns, ips) = certs::names_or_defaults(&options.dns, &options.ips);
    let serving = |ca: &Pair| certs::serving(ca, &dns, &ips, options.cert_validity);
    let mut next = stored.clone();
    match step {
        Step::Keep => {}
        Step::Create => {
            let ca = certs::new_ca(options.ca_validity)?;
            next = Stored {
                serving: Some(serving(&ca)?),
                ca: Some(ca),
                next: None,
                previous: None,
            };
        }
        Step::StageNextCa => next.next = Some((certs::new_ca(options.ca_validity)?, now)),
        Step::PromoteNextCa => {
            if let (Some((ca, _)), Some(old)) = (stored.next.clone(), &stored.ca) {
                next.serving = Some(serving(&ca)?);
                next.previous = Some((old.cert.clone(), now + options.overlap()));
                next.ca = Some(ca);
                next.next = None;
            }
        }
        Step::DropPreviousCa => next.previous = None,
        Step::RenewServing => {
            if let Some(ca) = &stored.ca {
                next.serving = Some(serving(ca)?);
            }
        }
    }
    Ok(next)
}

impl Stored {
    /// The PEM bundle the API server must trust: current, next and previous CAs.
    pub fn bundle(&self) -> String {
        let mut out = String::new();
        let certs = [
            self.ca.as_ref().map(|c| c.cert.as_str()),
            self.next.as_ref().map(|(c, _)| c.cert.as_str()),
            self.previous.as_ref().map(|(c, _)| c.as_str()),
        ];
        for cert in certs.into_iter().flatten() {
            out.push_str(cert.trim_end());
            out.push('\n');
        }
        out
    }

    fn from_secret(secret: &Secret) -> Self {
        let data = secret.data.clone().unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
        };
        let pair = |c: &str, k: &str| {
            Some(Pair {
                cert: text(c)?,
                key: text(k)?,
            })
        };
        let time = |k: &str| {
            secret.annotations().get(k).and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
        };
        Stored {
            ca: pair("ca.crt", "ca.key"),
            serving: pair("tls.crt", "tls.key"),
            next: pair("ca-next.crt", "ca-next.key").zip(time(NEXT_SINCE)),
            previous: text("ca-previous.crt").zip(time(PREVIOUS_UNTIL)),
        }
    }

    fn write_into(&self, secret: &mut Secret) {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_owned(), ByteString(v.as_bytes().to_vec()));
        };
        if let Some(ca) = &self.ca {
            put("ca.crt", &ca.cert);
            put("ca.key", &ca.key);
        }
        if let Some(s) = &self.serving {
            put("tls.crt", &s.cert);
            put("tls.key", &s.key);
        }
        if let Some((n, _)) = &self.next {
            put("ca-next.crt", &n.cert);
            put("ca-next.key", &n.key);
        }
        if let Some((p, _)) = &self.previous {
            put("ca-previous.crt", p);
        }
        put("ca-bundle.crt", &self.bundle());
        secret.data = Some(data);
        let annotations = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        let rfc3339 = |t: &OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        for (key, value) in [
            (NEXT_SINCE, self.next.as_ref().map(|(_, t)| rfc3339(t))),
            (
                PREVIOUS_UNTIL,
                self.previous.as_ref().map(|(_, t)| rfc3339(t)),
            ),
        ] {
            match value {
                Some(v) => annotations.insert(key.to_owned(), v),
                None => annotations.remove(key),
            };
        }
    }
}

/// Why a round of certificate upkeep failed; the next round retries.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "Secret {namespace}/{name}: {source} (credgate's ServiceAccount needs get, create and update on it)"
    )]
    Secret {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "webhook configuration {name}: {source} (credgate's ServiceAccount needs get and update on it)"
    )]
    Webhook { name: String, source: kube::Error },
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// One round: read the Secret, make the next change (if this replica wins the
/// write), publish the bundle, and write the serving pair to the files.
pub async fn reconcile(client: &Client, options: &Options) -> Result<Step, RotationError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let secret_error = |source| RotationError::Secret {
        namespace: options.namespace.clone(),
        name: options.secret.clone(),
        source,
    };
    let existing = api.get_opt(&options.secret).await.map_err(secret_error)?;
    let stored = existing
        .as_ref()
        .map(Stored::from_secret)
        .unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let step = next_step(&stored, now, options);
    let stored = if step == Step::Keep {
        stored
    } else {
        let next = apply(step, &stored, now, options)?;
        let mut secret = existing.clone().unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(options.secret.clone()),
                namespace: Some(options.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_owned(),
                    "credgate".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        });
        next.write_into(&mut secret);
        let written = match existing {
            None => api.create(&PostParams::default(), &secret).await,
            Some(_) => {
                api.replace(&options.secret, &PostParams::default(), &secret)
                    .await
            }
        };
        match written {
            Ok(_) => {
                info!(?step, secret = %options.secret, "certificates changed");
                next
            }
            // Another replica changed it first: use theirs next round.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Step::Keep),
            Err(e) => return Err(secret_error(e)),
        }
    };
    publish_bundle(client, options, &stored.bundle()).await?;
    if let Some(serving) = &stored.serving {
        let on_disk = std::fs::read_to_string(&options.cert_file).unwrap_or_default();
        if on_disk != serving.cert {
            certs::write_pair(serving, &options.cert_file, &options.key_file)?;
        }
    }
    Ok(step)
}

async fn publish_bundle(
    client: &Client,
    options: &Options,
    bundle: &str,
) -> Result<(), RotationError> {
    let encoded = ByteString(bundle.as_bytes().to_vec());
    for name in &options.webhook_configs {
        let error = |source| RotationError::Webhook {
            name: name.clone(),
            source,
        };
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        if let Some(mut config) = validating.get_opt(name).await.map_err(error)? {
            let hooks = config.webhooks.iter_mut().flatten();
            if set_bundles(hooks.map(|h| &mut h.client_config.ca_bundle), &encoded) {
                validating
                    .replace(name, &PostParams::default(), &config)
                    .await
                    .map_err(error)?;
                info!(config = %name, "caBundle of the validating webhooks updated");
            }
        }
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        if let Some(mut config) = mutating.get_opt(name).await.map_err(error)? {
            let hooks = config.webhooks.iter_mut().flatten();
            if set_bundles(hooks.map(|h| &mut h.client_config.ca_bundle), &encoded) {
                mutating
                    .replace(name, &PostParams::default(), &config)
                    .await
                    .map_err(error)?;
                info!(config = %name, "caBundle of the mutating webhooks updated");
            }
        }
    }
    Ok(())
}

/// Sets every bundle to `bundle`; true if any changed.
fn set_bundles<'a>(
    bundles: impl Iterator<Item = &'a mut Option<ByteString>>,
    bundle: &ByteString,
) -> bool {
    let mut changed = false;
    for b in bundles {
        if b.as_ref() != Some(bundle) {
            *b = Some(bundle.clone());
            changed = true;
        }
    }
    changed
}

/// Until the serving pair is on disk: the server cannot start without it.
pub async fn first(client: &Client, options: &Options) {
    loop {
        match reconcile(client, options).await {
            Ok(_) if options.cert_file.exists() => return,
            Ok(_) => {}
            Err(error) => warn!(%error, "built-in certificates not ready; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps the certificates fresh until the process ends.
pub async fn run(client: Client, options: Options) {
    loop {
        tokio::time::sleep(options.interval).await;
        if let Err(error) = reconcile(&client, &options).await {
            warn!(%error, "certificate upkeep failed; retrying next round");
        }
    }
}

/// The base64 form of a PEM bundle, as `caBundle` shows it in YAML.
pub fn base64_bundle(bundle: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            namespace: "credgate-system".into(),
            secret: "credgate-tls".into(),
            webhook_configs: vec!["credgate".into()],
            dns: vec!["credgate.credgate-system.svc".into()],
            ips: vec![],
            ca_validity: Duration::from_secs(3000),
            cert_validity: Duration::from_secs(300),
            interval: Duration::from_secs(10),
            cert_file: "tls.crt".into(),
            key_file: "tls.key".into(),
        }
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[test]
    fn a_ca_is_replaced_in_steps_that_keep_the_bundle_ahead() {
        let o = options();
        let t0 = OffsetDateTime::now_utc();
        assert_eq!(next_step(&Stored::default(), t0, &o), Step::Create);
        let s = apply(Step::Create, &Stored::default(), t0, &o).unwrap();
        assert_eq!(next_step(&s, t0, &o), Step::Keep);
        assert_eq!(s.bundle().matches("BEGIN CERTIFICATE").count(), 1);

        // Serving certificate: renewed in its last third, by the same CA.
        let late = t0 + secs(250);
        assert_eq!(next_step(&s, late, &o), Step::RenewServing);
        let renewed = apply(Step::RenewServing, &s, late, &o).unwrap();
        assert_eq!(renewed.ca, s.ca);
        assert_ne!(renewed.serving, s.serving);

        // CA in its last third: the next CA joins the bundle, serving unchanged.
        let ca_late = t0 + secs(2100);
        let staged = Stored {
            serving: Some(
                certs::serving(
                    s.ca.as_ref().unwrap(),
                    &o.dns,
                    &[],
                    Duration::from_secs(3000),
                )
                .unwrap(),
            ),
            ..s.clone()
        };
        assert_eq!(next_step(&staged, ca_late, &o), Step::StageNextCa);
        let staged = apply(Step::StageNextCa, &staged, ca_late, &o).unwrap();
        assert_eq!(staged.bundle().matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(staged.ca, s.ca);
        // Not promoted before the overlap (3 intervals) has passed.
        assert_eq!(next_step(&staged, ca_late + secs(29), &o), Step::Keep);
        let promote_at = ca_late + secs(30);
        assert_eq!(next_step(&staged, promote_at, &o), Step::PromoteNextCa);
        let promoted = apply(Step::PromoteNextCa, &staged, promote_at, &o).unwrap();
        assert_eq!(promoted.ca.as_ref(), staged.next.as_ref().map(|(c, _)| c));
        assert_eq!(
            promoted.previous.as_ref().map(|(c, _)| c),
            s.ca.as_ref().map(|c| &c.cert)
        );
        assert_eq!(promoted.bundle().matches("BEGIN CERTIFICATE").count(), 2);
        // The old CA leaves after another overlap.
        // (Certificates are issued at the real time, so the simulated clock sees the new one as due.)
        assert_ne!(
            next_step(&promoted, promote_at + secs(29), &o),
            Step::DropPreviousCa
        );
        assert_eq!(
            next_step(&promoted, promote_at + secs(30), &o),
            Step::DropPreviousCa
        );
        let dropped = apply(Step::DropPreviousCa, &promoted, promote_at + secs(30), &o).unwrap();
        assert_eq!(dropped.bundle().matches("BEGIN CERTIFICATE").count(), 1);
    }

    #[test]
    fn the_secret_round_trips_and_unreadable_content_starts_over() {
        let o = options();
        let now = OffsetDateTime::now_utc();
        let s = apply(Step::Create, &Stored::default(), now, &o).unwrap();
        let s = apply(Step::StageNextCa, &s, now, &o).unwrap();
        let mut secret = Secret::default();
        s.write_into(&mut secret);
        let back = Stored::from_secret(&secret);
        assert_eq!(back.ca, s.ca);
        assert_eq!(back.serving, s.serving);
        assert_eq!(
            back.next.as_ref().map(|(c, _)| c),
            s.next.as_ref().map(|(c, _)| c)
        );
        assert_eq!(
            secret.data.as_ref().unwrap()["ca-bundle.crt"].0,
            s.bundle().into_bytes()
        );
        secret
            .data
            .as_mut()
            .unwrap()
            .insert("tls.crt".into(), ByteString(b"garbage".to_vec()));
        assert_eq!(
            next_step(&Stored::from_secret(&secret), now, &o),
            Step::Create
        );
        // The key is never in Debug output.
        assert!(!format!("{s:?}").contains("PRIVATE KEY"));
    }
}

//! `credgate create <type> <name>`: the seeds' `+ NEW CREDENTIALS` form on the
//! command line. It builds the Secret each type needs (Secret type, keys,
//! labels) and creates it through the API server, so every rule of the
//! webhook applies and its refusal is printed as is.
//!
//! Secret values are read from stdin (or a prompt that does not echo) and from
//! files; they are never printed, logged or put in an error.

use base64::Engine as _;
use clap::{Args, ValueEnum};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};

use super::{CliError, ClusterArgs, ScopeArgs};
use crate::model::credential::{CredentialType, Scope, annotation, label};
use crate::policy::validate::{
    ACCESS_KEY_KEYS, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, OPAQUE_TYPE, PASSWORD_KEYS,
};

/// The four types, as `credgate create` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    DockerRegistry,
    AccessKey,
    Password,
    Generic,
}

impl From<TypeArg> for CredentialType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::DockerRegistry => CredentialType::DockerRegistry,
            TypeArg::AccessKey => CredentialType::AccessKey,
            TypeArg::Password => CredentialType::Password,
            TypeArg::Generic => CredentialType::Generic,
        }
    }
}

/// `--dry-run`: `client` prints the Secret only; `server` also has the API
/// server (and credgate) check it, storing nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    Client,
    Server,
}

/// `credgate create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(value_enum)]
    pub kind: TypeArg,
    /// The credential's name (also its Secret's name).
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Free text shown in the table (at most 250 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// Back the credential with this Secret of the same namespace, created in
    /// advance (`credgate existing-secrets` lists those that can), instead of data.
    #[arg(long, conflicts_with_all = ["server", "username", "password_stdin", "access_key_id", "secret_key_stdin", "from_literal", "from_file"])]
    pub existing_secret: Option<String>,
    /// docker-registry: the registry, e.g. ghcr.io.
    #[arg(long)]
    pub server: Option<String>,
    /// docker-registry and password: the user name.
    #[arg(long)]
    pub username: Option<String>,
    /// docker-registry and password: read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// access-key: the access key id.
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// access-key: read the secret key from stdin.
    #[arg(long)]
    pub secret_key_stdin: bool,
    /// generic: KEY=VALUE (repeat for more keys).
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// generic: KEY=PATH, or PATH (the key is the file's name).
    #[arg(long, value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// Print the Secret (values hidden) and create nothing; `server` also has
    /// it checked by the API server and credgate.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<DryRun>,
}

impl CreateArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let (namespace, scope) = self.scope.resolve(&conn)?;
        let secret = self.secret(&namespace, &scope, &mut Stdin)?;
        let scope_text = match &scope {
            Scope::Project => format!("project namespace {namespace}"),
            wider => wider.key(),
        };
        let what = format!(
            "credential {:?} ({}, {scope_text})",
            self.name,
            CredentialType::from(self.kind)
        );
        if self.dry_run == Some(DryRun::Client) {
            print!("{}", hidden(&secret));
            return Ok(());
        }
        let api = conn.api::<Secret>(Some(&namespace));
        let params = PostParams {
            dry_run: self.dry_run == Some(DryRun::Server),
            ..PostParams::default()
        };
        let created = api
            .create(&params, &secret)
            .await
            .map_err(|e| conn.error(format!("create {what}"), e))?;
        if params.dry_run {
            print!("{}", hidden(&created));
            eprintln!("{what} passed the server's checks (dry run: nothing was created)");
        } else {
            println!("{what} created: Secret {namespace}/{}", self.name);
        }
        Ok(())
    }

    /// The Secret to create; values come from `input` and files.
    fn secret(
        &self,
        namespace: &str,
        scope: &Scope,
        input: &mut dyn Input,
    ) -> Result<Secret, CliError> {
        let kind = CredentialType::from(self.kind);
        let mut labels = BTreeMap::from([(label::RESOURCE.to_owned(), kind.as_str().to_owned())]);
        match scope {
            Scope::Cluster => {
                labels.insert(label::CLUSTER_WIDE.to_owned(), "true".to_owned());
            }
            Scope::Department(d) => {
                labels.insert(label::DEPARTMENT.to_owned(), d.clone());
            }
            Scope::Project => {}
        }
        let mut annotations = BTreeMap::new();
        if let Some(d) = &self.description {
            annotations.insert(annotation::DESCRIPTION.to_owned(), d.clone());
        }
        let (secret_type, data) = match &self.existing_secret {
            Some(existing) => {
                annotations.insert(annotation::EXISTING_SECRET.to_owned(), existing.clone());
                (OPAQUE_TYPE, BTreeMap::new())
            }
            None => {
                // A new secret, made with its credential: never offered as an existing secret.
                annotations.insert(annotation::NEW_SECRET.to_owned(), "true".to_owned());
                self.data(kind, input)?
            }
        };
        Ok(Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: Some(secret_type.to_owned()),
            data: self
                .existing_secret
                .is_none()
                .then(|| data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Secret::default()
        })
    }

    /// The Secret type and data of a new secret of `kind`.
    fn data(
        &self,
        kind: CredentialType,
        input: &mut dyn Input,
    ) -> Result<(&'static str, BTreeMap<String, Vec<u8>>), CliError> {
        let usage = |s: &str| CliError::Usage(s.to_owned());
        let foreign = |flags: &[(&str, bool)]| -> Result<(), CliError> {
            match flags.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(CliError::Usage(format!(
                    "{flag} does not apply to {kind} credentials"
                ))),
                None => Ok(()),
            }
        };
        let generic = !self.from_literal.is_empty() || !self.from_file.is_empty();
        match kind {
            CredentialType::DockerRegistry => {
                foreign(&[
                    ("--access-key-id", self.access_key_id.is_some()),
                    ("--secret-key-stdin", self.secret_key_stdin),
                    ("--from-literal/--from-file", generic),
                ])?;
                let server = self
                    .server
                    .as_deref()
                    .ok_or_else(|| usage("docker-registry credentials need --server REGISTRY"))?;
                let username = self
                    .username
                    .as_deref()
                    .ok_or_else(|| usage("docker-registry credentials need --username"))?;
                let password =
                    self.secret_value(self.password_stdin, "--password-stdin", "Password", input)?;
                let password = String::from_utf8(password)
                    .map_err(|_| usage("the password is not UTF-8 text"))?;
                let auth = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let config = serde_json::json!({"auths": {server: {"username": username, "password": password, "auth": auth}}});
                Ok((
                    DOCKER_CONFIG_JSON_TYPE,
                    BTreeMap::from([(
                        DOCKER_CONFIG_JSON_KEY.to_owned(),
                        config.to_string().into_bytes(),
                    )]),
                ))
            }
            CredentialType::AccessKey => {
                foreign(&[
                    ("--server", self.server.is_some()),
                    ("--username", self.username.is_some()),
                    ("--password-stdin", self.password_stdin),
                    ("--from-literal/--from-file", generic),
                ])?;
                let id = self
                    .access_key_id
                    .as_deref()
                    .ok_or_else(|| usage("access-key credentials need --access-key-id"))?;
                let key = self.secret_value(
                    self.secret_key_stdin,
                    "--secret-key-stdin",
                    "Secret key",
                    input,
                )?;
                let [id_key, secret_key] = ACCESS_KEY_KEYS;
                Ok((
                    OPAQUE_TYPE,
                    BTreeMap::from([
                        (id_key.to_owned(), id.as_bytes().to_vec()),
                        (secret_key.to_owned(), key),
                    ]),
                ))
            }
            CredentialType::Password => {
                foreign(&[
                    ("--server", self.server.is_some()),
                    ("--access-key-id", self.access_key_id.is_some()),
                    ("--secret-key-stdin", self.secret_key_stdin),
                    ("--from-literal/--from-file", generic),
                ])?;
                let username = self
                    .username
                    .as_deref()
                    .ok_or_else(|| usage("password credentials need --username"))?;
                let password =
                    self.secret_value(self.password_stdin, "--password-stdin", "Password", input)?;
                let [user_key, password_key] = PASSWORD_KEYS[0];
                Ok((
                    OPAQUE_TYPE,
                    BTreeMap::from([
                        (user_key.to_owned(), username.as_bytes().to_vec()),
                        (password_key.to_owned(), password),
                    ]),
                ))
            }
            CredentialType::Generic => {
                foreign(&[
                    ("--server", self.server.is_some()),
                    ("--username", self.username.is_some()),
                    ("--password-stdin", self.password_stdin),
                    ("--access-key-id", self.access_key_id.is_some()),
                    ("--secret-key-stdin", self.secret_key_stdin),
                ])?;
                let mut data = BTreeMap::new();
                for (n, literal) in self.from_literal.iter().enumerate() {
                    // The argument may be a value given by mistake: never quote it.
                    let (k, v) = literal.split_once('=').ok_or_else(|| {
                        CliError::Usage(format!(
                            "--from-literal number {} has no '=': give KEY=VALUE",
                            n + 1
                        ))
                    })?;
                    if v.is_empty() {
                        return Err(CliError::Usage(format!(
                            "--from-literal number {} has an empty value: give KEY=VALUE",
                            n + 1
                        )));
                    }
                    put(&mut data, k, v.as_bytes().to_vec())?;
                }
                for spec in &self.from_file {
                    let (key, path) = match spec.split_once('=') {
                        Some((k, p)) => (k.to_owned(), p),
                        None => {
                            let name = std::path::Path::new(spec)
                                .file_name()
                                .and_then(|n| n.to_str());
                            (name.unwrap_or_default().to_owned(), spec.as_str())
                        }
                    };
                    let value = std::fs::read(path).map_err(|e| CliError::Input {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
                    put(&mut data, &key, value)?;
                }
                if data.is_empty() {
                    return Err(usage(
                        "generic credentials need --from-literal KEY=VALUE or --from-file [KEY=]PATH",
                    ));
                }
                Ok((OPAQUE_TYPE, data))
            }
        }
    }

    /// A secret value: stdin with its `flag`, else a prompt on a terminal.
    fn secret_value(
        &self,
        from_stdin: bool,
        flag: &str,
        prompt: &str,
        input: &mut dyn Input,
    ) -> Result<Vec<u8>, CliError> {
        let value = if from_stdin {
            input.read_all()?
        } else if input.is_terminal() {
            input.prompt(prompt)?
        } else {
            return Err(CliError::Usage(format!(
                "no terminal to ask for the {} on: pass it on stdin with {flag}",
                prompt.to_lowercase()
            )));
        };
        let value = trim_newline(value);
        if value.is_empty() {
            return Err(CliError::Usage(format!(
                "the {} is empty",
                prompt.to_lowercase()
            )));
        }
        Ok(value)
    }
}

/// Adds `key` once; kubectl's key rules.
fn put(data: &mut BTreeMap<String, Vec<u8>>, key: &str, value: Vec<u8>) -> Result<(), CliError> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(CliError::Usage(format!(
            "{key:?} is not a valid key: use letters, digits, '-', '_' and '.'"
        )));
    }
    if data.insert(key.to_owned(), value).is_some() {
        return Err(CliError::Usage(format!("key {key:?} is given twice")));
    }
    Ok(())
}

/// One trailing line break (of `echo` or a here-string) is not part of the value.
fn trim_newline(mut value: Vec<u8>) -> Vec<u8> {
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
    value
}

/// Where secret values come from (a test gives its own).
trait Input {
    fn read_all(&mut self) -> Result<Vec<u8>, CliError>;
    fn is_terminal(&self) -> bool;
    fn prompt(&mut self, prompt: &str) -> Result<Vec<u8>, CliError>;
}

struct Stdin;

impl Input for Stdin {
    fn read_all(&mut self) -> Result<Vec<u8>, CliError> {
        let mut value = Vec::new();
        std::io::stdin().read_to_end(&mut value)?;
        Ok(value)
    }

    fn is_terminal(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn prompt(&mut self, prompt: &str) -> Result<Vec<u8>, CliError> {
        Ok(rpassword::prompt_password(format!("{prompt}: "))?.into_bytes())
    }
}

/// The Secret as YAML with every value replaced by its length.
pub fn hidden(secret: &Secret) -> String {
    let mut shown = secret.clone();
    shown.metadata.managed_fields = None;
    shown.string_data = None;
    let mut doc = serde_json::to_value(&shown).unwrap_or_default();
    if let Some(data) = doc.get_mut("data").and_then(|d| d.as_object_mut()) {
        let sizes: BTreeMap<String, usize> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.len()))
            .collect();
        for (k, v) in data.iter_mut() {
            *v = format!(
                "(hidden, {} bytes)",
                sizes.get(k).copied().unwrap_or_default()
            )
            .into();
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::validate::shape;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: CreateArgs,
    }

    struct Given(Vec<u8>);

    impl Input for Given {
        fn read_all(&mut self) -> Result<Vec<u8>, CliError> {
            Ok(std::mem::take(&mut self.0))
        }
        fn is_terminal(&self) -> bool {
            false
        }
        fn prompt(&mut self, _: &str) -> Result<Vec<u8>, CliError> {
            unreachable!("no terminal")
        }
    }

    fn made(args: &[&str], stdin: &str) -> Result<Secret, CliError> {
        let cmd = Cmd::try_parse_from(std::iter::once("create").chain(args.iter().copied()))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        cmd.args.secret(
            "team-a",
            &Scope::Project,
            &mut Given(stdin.as_bytes().to_vec()),
        )
    }

    /// Every type makes a Secret the webhook's shape rule accepts, with the
    /// value read from stdin (its trailing newline dropped), and the dry run
    /// prints no value.
    #[test]
    fn each_type_makes_the_shape_the_webhook_wants() {
        let cases: [(&[&str], CredentialType); 4] = [
            (
                &[
                    "docker-registry",
                    "reg",
                    "-n",
                    "team-a",
                    "--server",
                    "ghcr.io",
                    "--username",
                    "bot",
                    "--password-stdin",
                ],
                CredentialType::DockerRegistry,
            ),
            (
                &[
                    "access-key",
                    "s3",
                    "-n",
                    "team-a",
                    "--access-key-id",
                    "AKIA1",
                    "--secret-key-stdin",
                ],
                CredentialType::AccessKey,
            ),
            (
                &[
                    "password",
                    "db",
                    "-n",
                    "team-a",
                    "--username",
                    "app",
                    "--password-stdin",
                ],
                CredentialType::Password,
            ),
            (
                &[
                    "generic",
                    "tok",
                    "-n",
                    "team-a",
                    "--from-literal",
                    "TOKEN=t0ken-value-1",
                ],
                CredentialType::Generic,
            ),
        ];
        for (args, kind) in cases {
            let secret = made(args, "s3cr3t-value-9\n").unwrap();
            shape(kind, &secret).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let labels = secret.metadata.labels.clone().unwrap();
            assert_eq!(labels["run.ai/resource"], kind.as_str());
            assert_eq!(
                secret.metadata.annotations.clone().unwrap()["credgate.run.ai/new-secret"],
                "true"
            );
            let all: Vec<u8> = secret
                .data
                .iter()
                .flatten()
                .flat_map(|(_, v)| v.0.clone())
                .collect();
            let all = String::from_utf8_lossy(&all);
            if kind != CredentialType::Generic {
                assert!(
                    all.contains("s3cr3t-value-9") && !all.contains("s3cr3t-value-9\n"),
                    "{args:?}"
                );
            }
            let printed = hidden(&secret);
            assert!(
                !printed.contains("s3cr3t") && !printed.contains("t0ken"),
                "{printed}"
            );
            assert!(printed.contains("(hidden, "), "{printed}");
        }
    }

    #[test]
    fn wrong_or_missing_flags_say_what_to_pass() {
        let err = made(
            &[
                "docker-registry",
                "reg",
                "-n",
                "team-a",
                "--username",
                "bot",
                "--password-stdin",
            ],
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
        let err = made(
            &[
                "access-key",
                "s3",
                "-n",
                "team-a",
                "--access-key-id",
                "A",
                "--server",
                "x",
                "--secret-key-stdin",
            ],
            "x",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--server does not apply to access-key"),
            "{err}"
        );
        let err = made(&["password", "db", "-n", "team-a", "--username", "app"], "").unwrap_err();
        assert!(err.to_string().contains("--password-stdin"), "{err}");
        let err = made(
            &["generic", "g", "-n", "team-a", "--from-literal", "novalue"],
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        // A value given without its key is never quoted back.
        let err = made(
            &["generic", "g", "-n", "team-a", "--from-literal", "s3cr3t"],
            "",
        )
        .unwrap_err();
        assert!(
            !err.to_string().contains("s3cr3t") && err.to_string().contains("number 1"),
            "{err}"
        );
        let err = made(
            &["generic", "g", "-n", "team-a", "--from-literal", "dG9rZW4="],
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty value"), "{err}");
        let err = made(&["generic", "g", "-n", "team-a"], "").unwrap_err();
        assert!(err.to_string().contains("--from-literal"), "{err}");
        assert!(
            made(
                &[
                    "generic",
                    "g",
                    "-n",
                    "team-a",
                    "--existing-secret",
                    "x",
                    "--from-literal",
                    "a=b"
                ],
                ""
            )
            .is_err()
        );
    }

    #[test]
    fn an_existing_secret_credential_carries_no_data_and_is_not_new() {
        let secret = made(
            &[
                "access-key",
                "s3",
                "-n",
                "team-a",
                "--existing-secret",
                "prepared",
                "--description",
                "bucket",
            ],
            "",
        )
        .unwrap();
        assert!(secret.data.is_none());
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations["run.ai/existing-secret"], "prepared");
        assert_eq!(annotations["run.ai/description"], "bucket");
        assert!(!annotations.contains_key("credgate.run.ai/new-secret"));
    }
}

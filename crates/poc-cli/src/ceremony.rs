//! Offline key ceremonies: a State's root key, a PoC's keys and certificate
//! request, and the State signing that request into a certificate.
//!
//! None of these talk to a daemon. Secret keys go to 0600 files (refusing to
//! overwrite), public material to ordinary files.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use poc_keyfile::KeyKind;
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::keys::{
    IdentityKeyPair, IdentityPublicKey, PrekeyPublic, PrekeySecret, StateRootKeyPair,
};
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode, Timestamp};
use serde::{Deserialize, Serialize};

use crate::fail::{fail, usage};
use crate::parse;
use crate::rng::{OsRandom, now};

/// The first line of a certificate request, so a root key holder can tell
/// what they are looking at.
pub(crate) const REQUEST_FORMAT: &str = "pocnet-certificate-request v1";

/// Longest certificate validity a request may ask for.
const MAX_VALID_DAYS: u32 = 3650;

/// A PoC's certificate request: what it asks its State's root key to sign.
/// Times are RFC 3339 UTC strings (whole seconds are accepted too).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateRequest {
    /// Always [`REQUEST_FORMAT`].
    #[serde(default)]
    pub(crate) format: Option<String>,
    /// The PoC id, e.g. `EST.cert`.
    pub(crate) poc_id: String,
    /// `technical` or `diplomatic`.
    pub(crate) role: String,
    /// Ed25519 identity public key, 64 hex digits.
    pub(crate) identity_key: String,
    /// The initial key-agreement prekey.
    pub(crate) prekey: PrekeyRequest,
    /// Where the PoC's node is reached.
    pub(crate) endpoints: Vec<EndpointRequest>,
    /// Certificate validity start.
    pub(crate) valid_from: TimeValue,
    /// Certificate validity end.
    pub(crate) valid_until: TimeValue,
}

/// The prekey part of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrekeyRequest {
    /// Prekey id, 16 hex digits (a number is accepted too).
    pub(crate) id: IdValue,
    /// X25519 public key, 64 hex digits.
    pub(crate) public: String,
    /// Validity start.
    pub(crate) valid_from: TimeValue,
    /// Validity end.
    pub(crate) valid_until: TimeValue,
}

/// An endpoint in a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointRequest {
    /// `direct` (the node's own QUIC endpoint) or `relay`.
    pub(crate) kind: String,
    /// `host:port`.
    pub(crate) address: String,
}

/// A time written as RFC 3339 text or as seconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum TimeValue {
    /// Seconds since 1970.
    Seconds(u64),
    /// RFC 3339.
    Text(String),
}

impl TimeValue {
    fn resolve(&self, field: &str) -> anyhow::Result<Timestamp> {
        match self {
            TimeValue::Seconds(s) => Ok(Timestamp(*s)),
            TimeValue::Text(t) => parse::rfc3339(t).map_err(|e| {
                fail(
                    format!("certificate request field `{field}`: {e}"),
                    "fix the request file or make a new one with `poc init`",
                )
            }),
        }
    }
}

/// A prekey id written as hex text or as a number.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum IdValue {
    /// A number.
    Number(u64),
    /// 16 hex digits.
    Text(String),
}

/// Creates `dir` (mode 0700) if it does not exist.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(fail(
            format!("{} exists and is not a directory", dir.display()),
            "give --out a directory path",
        ));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            fail(
                format!("cannot create directory {}: {e}", dir.display()),
                "check the path and your permissions",
            )
        })
}

/// Refuses to go on if any of `paths` exists: keys are never overwritten.
fn refuse_existing(paths: &[&Path]) -> anyhow::Result<()> {
    for path in paths {
        if path.exists() {
            return Err(fail(
                format!("{} already exists; nothing was written", path.display()),
                "keys and certificates are never overwritten: choose another --out, or move the old files away if you really mean to replace them",
            ));
        }
    }
    Ok(())
}

/// Writes a new non-secret file with `mode`, refusing to overwrite.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                fail(
                    format!("{} already exists; nothing was written", path.display()),
                    "choose another output file, or move the old one away",
                )
            } else {
                fail(
                    format!("cannot create {}: {e}", path.display()),
                    "check the path and your permissions",
                )
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn keyfile_error(e: poc_keyfile::KeyFileError) -> anyhow::Error {
    let hint = match &e {
        poc_keyfile::KeyFileError::Io { .. } => {
            "check the path (and that the file is on this machine)"
        }
        poc_keyfile::KeyFileError::Exists { .. } => {
            "keys are never overwritten: choose another --out, or move the old key away"
        }
        poc_keyfile::KeyFileError::Permissions { .. } => {
            "restrict the file as the message says before using it"
        }
        poc_keyfile::KeyFileError::WrongKind { .. } => "pass the right key file",
        _ => "pass a key file written by `poc state init` or `poc init`",
    };
    fail(e.to_string(), hint)
}

/// The State a PoC id belongs to, from its `XXX.` prefix.
pub(crate) fn state_of(poc: &PocId) -> Option<StateCode> {
    let (prefix, _) = poc.as_str().split_once('.')?;
    let state = StateCode::new(prefix).ok()?;
    poc.belongs_to(state).then_some(state)
}

/// `poc state init`: a State's root key pair.
pub(crate) fn state_init(state: &str, out: &Path) -> anyhow::Result<String> {
    let state = StateCode::new(state.trim()).map_err(|e| {
        usage(
            format!("--state: {e}"),
            "give your State's ISO 3166-1 alpha-3 code, e.g. --state EST",
        )
    })?;
    let key_path = out.join("state-root.key");
    let pub_path = out.join("state-root.pub");
    refuse_existing(&[&key_path, &pub_path])?;
    ensure_dir(out)?;
    let root = StateRootKeyPair::generate(&mut OsRandom::new());
    let label = state.as_str();
    poc_keyfile::write_secret(
        &key_path,
        KeyKind::StateRoot,
        Some(label),
        &root.to_secret_bytes(),
    )
    .map_err(keyfile_error)?;
    let public = root.public().to_bytes();
    poc_keyfile::write_public(&pub_path, KeyKind::StateRoot, Some(label), &public)
        .map_err(keyfile_error)?;
    let mut text = String::new();
    let _ = writeln!(text, "State root key for {state} created.");
    let _ = writeln!(
        text,
        "  secret:  {}   (mode 0600: keep it offline, it signs your PoCs' certificates)",
        key_path.display()
    );
    let _ = writeln!(text, "  public:  {}", pub_path.display());
    let _ = writeln!(text, "  key:     {}", hex::encode(public));
    let _ = writeln!(text, "Next:");
    let _ = writeln!(
        text,
        "  - give {} to the directory manager through your Permanent Mission, and confirm the key above by a second channel;",
        pub_path.display()
    );
    let _ = writeln!(
        text,
        "  - certify each PoC with `poc state sign-cert --root-key {} --request <POC>.request.json --out <POC>.cert`.",
        key_path.display()
    );
    Ok(text)
}

/// What `poc init` needs.
#[derive(Debug)]
pub(crate) struct InitParams {
    /// The PoC id.
    pub(crate) poc: PocId,
    /// Its role.
    pub(crate) role: Role,
    /// Direct endpoints, `host:port`.
    pub(crate) endpoints: Vec<String>,
    /// Relays holding its mailbox, `host:port`.
    pub(crate) relays: Vec<String>,
    /// Output directory.
    pub(crate) out: PathBuf,
    /// Certificate (and prekey) validity in days.
    pub(crate) valid_days: u32,
}

/// `poc init`: a PoC's identity key, prekey and certificate request.
pub(crate) fn init(params: &InitParams) -> anyhow::Result<String> {
    let poc = &params.poc;
    let state = state_of(poc).ok_or_else(|| {
        usage(
            format!("--poc {poc}: a PoC id must start with its State's ISO 3166-1 alpha-3 code and a dot"),
            "e.g. --poc EST.cert or --poc FRA.mfa-cyber",
        )
    })?;
    if params.endpoints.is_empty() && params.relays.is_empty() {
        return Err(usage(
            "a PoC needs at least one endpoint",
            "give --endpoint HOST:PORT (the node's QUIC listen address as others reach it), and/or --relay HOST:PORT",
        ));
    }
    if params.endpoints.len() + params.relays.len() > poc_proto::limits::MAX_ENDPOINTS {
        return Err(usage(
            format!(
                "at most {} endpoints fit in a certificate",
                poc_proto::limits::MAX_ENDPOINTS
            ),
            "list fewer --endpoint/--relay addresses",
        ));
    }
    if params.valid_days == 0 || params.valid_days > MAX_VALID_DAYS {
        return Err(usage(
            format!("--valid-days {} is out of range", params.valid_days),
            format!("give 1 to {MAX_VALID_DAYS} days (default 365)"),
        ));
    }
    let out = &params.out;
    let identity_path = out.join("identity.key");
    let prekey_path = out.join("prekey.key");
    let request_path = out.join(format!("{poc}.request.json"));
    refuse_existing(&[&identity_path, &prekey_path, &request_path])?;
    ensure_dir(out)?;

    let mut rng = OsRandom::new();
    let identity = IdentityKeyPair::generate(&mut rng);
    let prekey = PrekeySecret::generate(&mut rng);
    let prekey_id = PrekeyId(rng.next_u64());
    let valid_from = now();
    let valid_until = valid_from.plus(Seconds::days(u64::from(params.valid_days)));

    poc_keyfile::write_secret(
        &identity_path,
        KeyKind::Identity,
        Some(poc.as_str()),
        &identity.to_secret_bytes(),
    )
    .map_err(keyfile_error)?;
    poc_keyfile::write_secret(
        &prekey_path,
        KeyKind::Prekey,
        Some(&format!("{poc} prekey {prekey_id}")),
        &prekey.to_secret_bytes(),
    )
    .map_err(keyfile_error)?;

    let endpoints = params
        .endpoints
        .iter()
        .map(|a| ("direct", a))
        .chain(params.relays.iter().map(|a| ("relay", a)))
        .map(|(kind, address)| EndpointRequest {
            kind: kind.to_owned(),
            address: address.clone(),
        })
        .collect::<Vec<_>>();
    let request = CertificateRequest {
        format: Some(REQUEST_FORMAT.to_owned()),
        poc_id: poc.to_string(),
        role: params.role.to_string(),
        identity_key: hex::encode(identity.public().to_bytes()),
        prekey: PrekeyRequest {
            id: IdValue::Text(prekey_id.to_string()),
            public: hex::encode(prekey.public().to_bytes()),
            // The prekey lives as long as the certificate for now; rotation
            // (signed by the identity key) comes with the daemon.
            valid_from: TimeValue::Text(valid_from.to_string()),
            valid_until: TimeValue::Text(valid_until.to_string()),
        },
        endpoints,
        valid_from: TimeValue::Text(valid_from.to_string()),
        valid_until: TimeValue::Text(valid_until.to_string()),
    };
    let mut json = serde_json::to_vec_pretty(&request).context("cannot encode the request")?;
    json.push(b'\n');
    write_new_file(&request_path, &json, 0o644)?;

    let mut text = String::new();
    let _ = writeln!(text, "Keys for {poc} ({}, {state}) created.", params.role);
    let _ = writeln!(
        text,
        "  identity key:  {}   (0600)",
        identity_path.display()
    );
    let _ = writeln!(text, "  prekey:        {}   (0600)", prekey_path.display());
    let _ = writeln!(text, "  request:       {}", request_path.display());
    let _ = writeln!(
        text,
        "  identity:      {}",
        hex::encode(identity.public().to_bytes())
    );
    let _ = writeln!(text, "  valid:         {valid_from} to {valid_until}");
    for e in &request.endpoints {
        let _ = writeln!(text, "  endpoint:      {} {}", e.kind, e.address);
    }
    let _ = writeln!(text, "Next:");
    let _ = writeln!(
        text,
        "  - have {state}'s root key holder sign it: `poc state sign-cert --root-key state-root.key --request {} --out {poc}.cert`",
        request_path.display()
    );
    let _ = writeln!(
        text,
        "    (they should confirm the identity key above with you by a second channel);"
    );
    let _ = writeln!(
        text,
        "  - point pocd at the keys: [node] identity_key = \"{}\", prekey_key = \"{}\".",
        identity_path.display(),
        prekey_path.display()
    );
    Ok(text)
}

fn hex32(field: &str, text: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
        fail(
            format!("certificate request field `{field}` is not 64 hex digits"),
            "the request file is damaged; make a new one with `poc init`",
        )
    })?;
    Ok(out)
}

/// What `poc state sign-cert` needs.
#[derive(Debug)]
pub(crate) struct SignParams {
    /// The State root secret key file.
    pub(crate) root_key: PathBuf,
    /// The request JSON.
    pub(crate) request: PathBuf,
    /// Where the certificate goes.
    pub(crate) out: PathBuf,
    /// The State, when the root key file has no label.
    pub(crate) state: Option<String>,
}

/// `poc state sign-cert`: checks a request and issues the certificate.
pub(crate) fn sign_cert(params: &SignParams) -> anyhow::Result<String> {
    let secret =
        poc_keyfile::read_secret(&params.root_key, KeyKind::StateRoot).map_err(keyfile_error)?;
    let root = StateRootKeyPair::from_secret_bytes(&secret.secret);
    let labelled = secret
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let root_state = match (params.state.as_deref(), labelled) {
        (Some(given), Some(label)) if given.trim() != label => {
            return Err(usage(
                format!(
                    "--state {given} does not match the root key file {}, which is labelled {label}",
                    params.root_key.display()
                ),
                "drop --state, or pass the root key of the State you mean",
            ));
        }
        (Some(code), _) | (None, Some(code)) => StateCode::new(code.trim()).map_err(|e| {
            usage(
                format!("the root key's State: {e}"),
                "pass --state XXX with your State's ISO 3166-1 alpha-3 code",
            )
        })?,
        (None, None) => {
            return Err(usage(
                format!(
                    "{} does not say which State it belongs to (no label)",
                    params.root_key.display()
                ),
                "pass --state XXX with your State's ISO 3166-1 alpha-3 code",
            ));
        }
    };

    let request_text = fs::read_to_string(&params.request).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", params.request.display()),
            "pass the .request.json file written by `poc init`",
        )
    })?;
    let request: CertificateRequest = serde_json::from_str(&request_text).map_err(|e| {
        fail(
            format!(
                "{} is not a pocnet certificate request: {e}",
                params.request.display()
            ),
            "pass the .request.json file written by `poc init`",
        )
    })?;
    if let Some(format) = &request.format
        && format != REQUEST_FORMAT
    {
        return Err(fail(
            format!(
                "{} is a {format:?}, not a {REQUEST_FORMAT:?}",
                params.request.display()
            ),
            "this poc may be older than the one that wrote the request; use the same version",
        ));
    }

    let poc = PocId::new(request.poc_id.trim()).map_err(|e| {
        fail(
            format!("certificate request: {e}"),
            "make a new request with `poc init --poc XXX.name`",
        )
    })?;
    let claimed_state = state_of(&poc);
    if claimed_state != Some(root_state) {
        let owner = claimed_state
            .map(|s| format!("belongs to {s} (taken from the PoC id prefix)"))
            .unwrap_or_else(|| "does not start with a State code".into());
        return Err(fail(
            format!(
                "refused: the request is for {poc}, which {owner}, but {} is {root_state}'s root key. Nothing was signed.",
                params.root_key.display()
            ),
            match claimed_state {
                Some(s) => format!(
                    "a State's root key certifies only that State's PoCs: send the request to {s}'s root key holder, or have the PoC make a request as {root_state}.<name>"
                ),
                None => format!(
                    "have the PoC make a new request with `poc init --poc {root_state}.<name>`"
                ),
            },
        ));
    }
    let role = match request.role.trim() {
        "technical" => Role::Technical,
        "diplomatic" => Role::Diplomatic,
        other => {
            return Err(fail(
                format!(
                    "refused: role {other:?} is not diplomatic or technical. Nothing was signed."
                ),
                "a State certifies diplomatic and technical PoCs only; make a new request with `poc init --role technical|diplomatic`",
            ));
        }
    };
    let identity_key = IdentityPublicKey::from_bytes(hex32("identity_key", &request.identity_key)?)
        .map_err(|e| {
            fail(
                format!("refused: the identity key is not usable: {e}"),
                "make a new request with `poc init`",
            )
        })?;
    let prekey_public = PrekeyPublic::from_bytes(hex32("prekey.public", &request.prekey.public)?)
        .map_err(|e| {
        fail(
            format!("refused: the prekey is not usable: {e}"),
            "make a new request with `poc init`",
        )
    })?;
    let prekey_id = match &request.prekey.id {
        IdValue::Number(n) => PrekeyId(*n),
        IdValue::Text(t) => PrekeyId(u64::from_str_radix(t.trim(), 16).map_err(|_| {
            fail(
                "certificate request field `prekey.id` is not 16 hex digits",
                "make a new request with `poc init`",
            )
        })?),
    };
    let valid_from = request.valid_from.resolve("valid_from")?;
    let valid_until = request.valid_until.resolve("valid_until")?;
    let prekey = Prekey {
        id: prekey_id,
        public: prekey_public,
        valid_from: request.prekey.valid_from.resolve("prekey.valid_from")?,
        valid_until: request.prekey.valid_until.resolve("prekey.valid_until")?,
    };
    let now = now();
    if valid_until <= valid_from || prekey.valid_until <= prekey.valid_from {
        return Err(fail(
            "refused: the request's validity ends before it starts",
            "make a new request with `poc init`",
        ));
    }
    if valid_until <= now {
        return Err(fail(
            format!("refused: the request's validity ended at {valid_until}"),
            "make a new request with `poc init`",
        ));
    }
    if valid_until.since(valid_from) > Seconds::days(u64::from(MAX_VALID_DAYS)) {
        return Err(fail(
            format!("refused: the request asks for more than {MAX_VALID_DAYS} days of validity"),
            "make a new request with a shorter --valid-days",
        ));
    }
    if request.endpoints.is_empty() {
        return Err(fail(
            "refused: the request names no endpoint, so nobody could reach the PoC",
            "make a new request with `poc init --endpoint HOST:PORT`",
        ));
    }
    let mut endpoints = Vec::new();
    for e in &request.endpoints {
        let address = parse::endpoint(&e.address).map_err(|m| {
            fail(
                format!("refused: endpoint: {m}"),
                "make a new request with a valid --endpoint",
            )
        })?;
        endpoints.push(match e.kind.trim() {
            "direct" => Endpoint::Direct { address },
            "relay" => Endpoint::Relay { address },
            other => {
                return Err(fail(
                    format!("refused: endpoint kind {other:?} is not direct or relay"),
                    "make a new request with `poc init`",
                ));
            }
        });
    }

    let body = CertificateBody {
        poc_id: poc.clone(),
        issuer: Issuer::State(root_state),
        role,
        identity_key,
        prekey,
        valid_from,
        valid_until,
        endpoints,
    };
    let certificate = PocCertificate::issue_by_state(&body, &root).map_err(|e| {
        fail(
            format!("refused: cannot issue the certificate: {e}"),
            "fix the request (make a new one with `poc init`) and try again",
        )
    })?;
    // Check our own work before anyone relies on it.
    certificate
        .verify_by_state(&root.public())
        .context("the certificate just issued does not verify")?;
    let mut bytes = certificate.to_bytes();
    write_new_file(&params.out, &bytes, 0o644)?;
    bytes.clear();

    let mut text = String::new();
    let _ = writeln!(text, "Certificate issued by {root_state}'s root key.");
    let _ = writeln!(text, "  PoC:        {poc}");
    let _ = writeln!(text, "  role:       {role}");
    let _ = writeln!(text, "  identity:   {}", request.identity_key.trim());
    let _ = writeln!(text, "  prekey:     {prekey_id}");
    let _ = writeln!(text, "  valid:      {valid_from} to {valid_until}");
    for e in &body.endpoints {
        match e {
            Endpoint::Direct { address } => {
                let _ = writeln!(text, "  endpoint:   direct {address}");
            }
            Endpoint::Relay { address } => {
                let _ = writeln!(text, "  endpoint:   relay {address}");
            }
        }
    }
    let _ = writeln!(text, "  written to: {}", params.out.display());
    let _ = writeln!(
        text,
        "Next: give the certificate to the directory manager for the next snapshot, and to the PoC's operator."
    );
    Ok(text)
}

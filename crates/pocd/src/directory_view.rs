//! `poc directory list/show/status`: the node's verified directory with the
//! State-signed details, and its sync state.

use poc_control::{DirectoryEntryView, DirectoryStatusView};
use poc_proto::Issuer;
use poc_proto::certificate::Endpoint;

use crate::node::Node;

/// Every verified entry.
pub(crate) fn entries(node: &Node) -> Vec<DirectoryEntryView> {
    let directory = node
        .directory
        .read()
        .map(|d| d.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    directory
        .entries()
        .iter()
        .map(|(id, entry)| {
            let body = entry.certificate.body();
            let details = entry.details.as_ref();
            DirectoryEntryView {
                poc_id: id.clone(),
                state: match body.issuer {
                    Issuer::State(s) => Some(s.to_string()),
                    Issuer::DirectoryManager => None,
                },
                role: body.role.to_string(),
                revoked: entry.revoked,
                entity: details.map(|d| d.entity.clone()),
                person_name: details.and_then(|d| d.person_name.clone()),
                person_title: details.and_then(|d| d.person_title.clone()),
                phone: details.and_then(|d| d.phone.clone()),
                email: details.and_then(|d| d.email.clone()),
                working_languages: details
                    .map(|d| {
                        d.working_languages
                            .iter()
                            .map(|l| l.tag().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                language: details.map(|d| d.language.tag().to_owned()),
                english: details.and_then(|d| d.english.clone()),
                revision: details.map(|d| d.revision),
                endpoints: body
                    .endpoints
                    .iter()
                    .map(|e| match e {
                        Endpoint::Direct { address } => format!("direct {address}"),
                        Endpoint::Relay { address } => format!("relay {address}"),
                    })
                    .collect(),
                identity_key: hex::encode(body.identity_key.to_bytes()),
                valid_until: body.valid_until,
            }
        })
        .collect()
}

/// The snapshot held, last sync and alerts.
pub(crate) async fn status(node: &Node) -> DirectoryStatusView {
    let directory = node
        .directory
        .read()
        .map(|d| d.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    DirectoryStatusView {
        sequence: directory.sequence(),
        digest: directory.digest().to_string(),
        issued_at: directory.issued_at(),
        entries: u64::try_from(directory.entries().len()).unwrap_or(u64::MAX),
        rejected: directory
            .rejected()
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.poc_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "(undecodable)".into()),
                    r.reason
                )
            })
            .collect(),
        last_sync: crate::directory_sync::last_sync(node).await,
        alerts: crate::directory_sync::alerts(node).await,
    }
}

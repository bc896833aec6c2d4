//! Who may send what to whom (Annex A para 9).
//!
//! - Within one State, any PoC may write to any other.
//! - Across States, diplomatic PoCs write to diplomatic PoCs and technical
//!   PoCs to technical PoCs.
//! - The directory manager only sends pings (and receipts); PoCs only send
//!   it ping replies (and receipts). The directory must not carry
//!   substantive or confidential traffic (para 7(c)).

use crate::certificate::CertificateBody;
use crate::error::OpenError;
use crate::identity::Role;
use crate::message::MessageKind;

/// Checks that a PoC certified by `sender` may send a `kind` message to the
/// PoC certified by `recipient`.
pub fn check_roles(
    sender: &CertificateBody,
    recipient: &CertificateBody,
    kind: MessageKind,
) -> Result<(), OpenError> {
    let refuse = || OpenError::RoleNotAllowed {
        sender_role: sender.role,
        recipient_role: recipient.role,
        kind,
    };
    let manager_traffic = |allowed: MessageKind| kind == allowed || kind == MessageKind::Receipt;
    match (sender.role, recipient.role) {
        (Role::DirectoryManager, _) => manager_traffic(MessageKind::Ping)
            .then_some(())
            .ok_or_else(refuse),
        (_, Role::DirectoryManager) => manager_traffic(MessageKind::PingReply)
            .then_some(())
            .ok_or_else(refuse),
        _ if sender.issuer == recipient.issuer => Ok(()),
        (a, b) if a == b => Ok(()),
        _ => Err(refuse()),
    }
}

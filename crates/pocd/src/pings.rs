//! Directory pings as the operator sees them (`poc ping list`, `poc ping
//! ack`): every ping received from the directory manager, read from the
//! record, with whether this node answered it. With `[pings] auto_reply =
//! false` the reply waits for `poc ping ack`.

use std::sync::Arc;

use poc_control::{ApiError, PingView, SendRequest};
use poc_proto::message::{Handling, Language, PingReply};
use poc_proto::{Body, Message, MessageId};
use poc_store::RecordEvent;

use crate::node::Node;

/// A received ping with what `ack` needs.
struct Received {
    view: PingView,
    message_id: MessageId,
}

async fn received(node: &Node) -> Result<Vec<Received>, ApiError> {
    let entries = node
        .db
        .run(|tx| {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let page = tx.record_page(after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                all.extend(page.into_iter().filter(|e| {
                    matches!(e.event, RecordEvent::Received | RecordEvent::Sent)
                        && matches!(e.kind.as_deref(), Some("ping" | "ping reply"))
                }));
            }
            Ok(all)
        })
        .await
        .map_err(|e| ApiError::new(format!("storage: {e}"), None))?;
    let mut pings: Vec<Received> = Vec::new();
    let mut answered = std::collections::HashSet::new();
    for entry in &entries {
        let Some(message) = entry
            .content
            .as_deref()
            .and_then(|c| Message::decode(c).ok())
        else {
            continue;
        };
        match (&entry.event, &message.body) {
            (RecordEvent::Received, Body::Ping(ping)) => {
                // A reminder repeats the campaign: list it once.
                if pings
                    .iter()
                    .any(|p| p.view.campaign == ping.campaign.to_string())
                {
                    continue;
                }
                pings.push(Received {
                    view: PingView {
                        campaign: ping.campaign.to_string(),
                        from: message.header.sender.clone(),
                        received_at: entry.at,
                        reply_by: ping.reply_by,
                        answered: false,
                        thread_id: message.header.thread_id,
                    },
                    message_id: message.header.message_id,
                });
            }
            (RecordEvent::Sent, Body::PingReply(reply)) => {
                answered.insert(reply.campaign.to_string());
            }
            _ => {}
        }
    }
    for p in &mut pings {
        p.view.answered = answered.contains(&p.view.campaign);
    }
    Ok(pings)
}

/// Every ping received.
pub(crate) async fn list(node: &Node) -> Result<Vec<PingView>, ApiError> {
    Ok(received(node).await?.into_iter().map(|p| p.view).collect())
}

/// Sends the ping reply for `campaign`.
pub(crate) async fn ack(node: &Arc<Node>, campaign: &str) -> Result<PingView, ApiError> {
    let pings = received(node).await?;
    let Some(ping) = pings.into_iter().find(|p| p.view.campaign == campaign) else {
        return Err(ApiError::new(
            format!("no ping of campaign {campaign} was received"),
            Some("list pings with `poc ping list`"),
        ));
    };
    if ping.view.answered {
        return Err(ApiError::new(
            format!("the ping of campaign {campaign} is already acknowledged"),
            None,
        ));
    }
    let campaign_id = poc_proto::message::CampaignId::from_hex(campaign)
        .ok_or_else(|| ApiError::new(format!("{campaign} is not a campaign id"), None))?;
    node.send(SendRequest {
        to: ping.view.from.clone(),
        thread: Some(ping.view.thread_id),
        in_reply_to: Some(ping.message_id),
        language: Language::English,
        handling: Handling::default(),
        exercise: None,
        body: Body::PingReply(PingReply {
            campaign: campaign_id,
        }),
    })
    .await?;
    Ok(PingView {
        answered: true,
        ..ping.view
    })
}

//! The EventBridge adapter: lifeboat's own events (`Notice`) onto the account's bus, one
//! `PutEvents` entry each, source `lifeboat`. No bus configured: nothing is published.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::error::classify;
use super::{Announcer, AwsError};
use crate::event::LIFEBOAT_SOURCE;
use crate::report::Notice;

pub struct EventsAdapter {
    client: aws_sdk_eventbridge::Client,
    /// The bus's name or ARN; `None`: publish nothing.
    bus: Option<String>,
}

impl EventsAdapter {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: Option<String>) -> Self {
        Self { client, bus }
    }
}

impl Announcer for EventsAdapter {
    async fn announce(&self, notice: &Notice) -> Result<(), AwsError> {
        const OP: &str = "PutEvents";
        let Some(bus) = &self.bus else {
            return Ok(());
        };
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(LIFEBOAT_SOURCE)
            .detail_type(notice.detail_type)
            .detail(notice.detail.to_string())
            .build();
        let reply = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk(OP, err))?;
        // PutEvents answers 200 and still fails entries one by one ("PutEvents", Amazon
        // EventBridge API Reference: FailedEntryCount, each entry's ErrorCode).
        if reply.failed_entry_count() > 0 {
            let failed = reply.entries().iter().find(|e| e.error_code().is_some());
            let code = failed.and_then(|e| e.error_code()).map(str::to_owned);
            let message = failed.and_then(|e| e.error_message()).map(str::to_owned);
            return Err(AwsError {
                operation: OP,
                kind: classify(code.as_deref(), message.as_deref(), None),
                code,
                message,
                source: None,
            });
        }
        Ok(())
    }
}

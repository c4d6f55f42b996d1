//! pushgate-mock: a simulated push provider with devices that have inboxes.
//!
//! Configurable send latency, receipt delay, transient and permanent failure rates,
//! deterministic outages and receipt loss. Its devices' receipts are signed lines fed
//! through the gateway's receipts callback path, exactly as a real provider's would be.
//! It is the embedded default provider and the load-test target.

mod callbacks;
mod config;
mod devices;
mod error;
mod provider;

pub use callbacks::{
    parse as parse_receipts, parse_upstream, sign_line, sign_upstream, ReceiptLine, UpstreamLine,
};
pub use config::MockSettings;
pub use devices::InboxEntry;
pub use error::MockError;
pub use provider::MockProvider;

/// `kind = "mock"`: a simulated provider with devices that have inboxes.
pub struct MockKind;

impl pushgate_api::adapter::AdapterKind for MockKind {
    const KIND: &'static str = "mock";
    type Settings = MockSettings;
    type Error = MockError;

    fn prepare(
        settings: &mut MockSettings,
        _context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), MockError> {
        settings.validate()
    }

    fn build(
        name: &str,
        settings: MockSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_api::provider::Provider>, MockError> {
        Ok(std::sync::Arc::new(MockProvider::new(name, settings)?))
    }
}

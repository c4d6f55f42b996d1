//! A plugin instance as a `Provider`.

use std::any::Any;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pushgate_engine::metrics as m;
use pushgate_engine::model::{Receipt, ReceiptStatus, Upstream};
use pushgate_engine::provider::{
    CallbackError, CallbackRequest, OutboundDelivery, ParsedReceipts, ParsedUpstream, Provider,
    ProviderError, ProviderLimits, RejectedItem, Sent,
};
use pushgate_plugin_abi::{status, Buffer, ParseFn, PluginVtable};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::library::{load, PluginLibrary, Vtable};
use super::PluginError;

/// `[[providers]] kind = "plugin"` settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The shared library.
    pub path: PathBuf,
    /// Passed to the plugin's `create` as JSON.
    #[serde(default)]
    pub options: Option<Value>,
    /// Blocking sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest a send may take; then the delivery is retried (the call is left to finish).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Largest result buffer accepted from the plugin.
    #[serde(default = "default_max_result")]
    pub max_result_bytes: usize,
    /// How long a sent delivery waits for its receipt before it is sent again with the same
    /// idempotency key (0, the default: never; set it for a plugin that reports receipts).
    #[serde(default)]
    pub receipt_timeout_ms: u64,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> u64 {
    10_000
}
fn default_max_result() -> usize {
    1024 * 1024
}

impl PluginSettings {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err("concurrency must be between 1 and 1024".into());
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be at least 1".into());
        }
        if self.max_result_bytes < 1024 {
            return Err("max_result_bytes must be at least 1024".into());
        }
        if matches!(&self.options, Some(v) if !v.is_object()) {
            return Err("options must be a table".into());
        }
        Ok(())
    }
}

/// An instance the plugin created; destroyed when the last user lets go.
struct Instance {
    ptr: *mut c_void,
    lib: &'static PluginLibrary,
}

// SAFETY: the ABI requires instances to be usable from several threads at once.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: made by this library's create; no call holds it any more (Arc).
        unsafe { (self.lib.vtable.destroy)(self.ptr) };
    }
}

/// The result of one plugin call: status and (bounded) result bytes.
struct Answer {
    status: i32,
    bytes: Vec<u8>,
    too_large: bool,
}

/// Calls a `(instance, input, &buffer)` plugin function and takes ownership of its buffer.
fn call(
    vtable: Vtable,
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buffer) -> i32,
    instance: *mut c_void,
    input: &[u8],
    max: usize,
) -> Answer {
    let mut out = Buffer::EMPTY;
    // SAFETY: per the ABI: the input is valid for the call, `out` is writable.
    let status = unsafe { f(instance, input.as_ptr(), input.len(), &mut out) };
    let too_large = out.len > max;
    let bytes = if out.ptr.is_null() || too_large {
        Vec::new()
    } else {
        // SAFETY: the plugin returned `len` readable bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
    };
    if !out.ptr.is_null() {
        // SAFETY: the plugin's own buffer, freed once by the plugin's own function.
        unsafe { (vtable.free_buffer)(out) };
    }
    Answer {
        status,
        bytes,
        too_large,
    }
}

/// A provider plugin instance.
pub struct PluginProvider {
    name: String,
    lib: &'static PluginLibrary,
    instance: Arc<Instance>,
    permits: Arc<Semaphore>,
    settings: PluginSettings,
}

impl PluginProvider {
    /// Loads the library (once) and creates an instance with the options.
    pub fn new(name: &str, settings: PluginSettings) -> Result<Self, PluginError> {
        let lib = load(&settings.path)?;
        let fail = |reason: String| PluginError {
            path: settings.path.display().to_string(),
            reason,
        };
        let options = settings
            .options
            .clone()
            .unwrap_or_else(|| json!({}))
            .to_string();
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut error = Buffer::EMPTY;
        // SAFETY: per the ABI: input valid for the call, out-pointers writable.
        let code = unsafe {
            (lib.vtable.create)(options.as_ptr(), options.len(), &mut instance, &mut error)
        };
        let message = if error.ptr.is_null() {
            String::new()
        } else {
            // SAFETY: the plugin's buffer of `len` bytes; bounded below.
            let text = String::from_utf8_lossy(unsafe {
                std::slice::from_raw_parts(error.ptr, error.len.min(4096))
            })
            .into_owned();
            // SAFETY: freed once by the plugin.
            unsafe { (lib.vtable.free_buffer)(error) };
            text
        };
        if code != status::OK || instance.is_null() {
            return Err(fail(format!("create failed (status {code}): {message}")));
        }
        Ok(PluginProvider {
            name: name.to_string(),
            lib,
            instance: Arc::new(Instance { ptr: instance, lib }),
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
        })
    }

    fn fault(&self, kind: &'static str, detail: &str) {
        metrics::counter!(m::PLUGIN_FAULTS_TOTAL, "plugin" => self.lib.name.clone(), "kind" => kind).increment(1);
        tracing::warn!(provider = %self.name, plugin = %self.lib.name, kind, detail, "plugin fault");
    }

    fn optional(&self, end: usize, f: Option<ParseFn>) -> Option<ParseFn> {
        if self.lib.has(end) {
            f
        } else {
            None
        }
    }

    /// Runs an optional parser on a callback body and returns its JSON.
    fn parse(
        &self,
        f: Option<ParseFn>,
        what: &'static str,
        body: &[u8],
    ) -> Result<Value, CallbackError> {
        let f = f.ok_or(CallbackError::NotSupported(what))?;
        let answer = call(
            self.lib.vtable,
            f,
            self.instance.ptr,
            body,
            self.settings.max_result_bytes,
        );
        match answer.status {
            status::OK if !answer.too_large => serde_json::from_slice(&answer.bytes).map_err(|e| {
                self.fault("bad_json", &e.to_string());
                CallbackError::Malformed(format!(
                    "plugin {} answered with invalid JSON",
                    self.lib.name
                ))
            }),
            status::OK => {
                self.fault("huge_result", what);
                Err(CallbackError::Malformed("plugin answer too large".into()))
            }
            status::PANIC => {
                self.fault("panic", what);
                Err(CallbackError::Malformed(format!(
                    "plugin {} panicked",
                    self.lib.name
                )))
            }
            code => Err(CallbackError::Malformed(format!(
                "plugin {} refused the callback (status {code})",
                self.lib.name
            ))),
        }
    }
}

fn rejected(v: &Value) -> Vec<RejectedItem> {
    v["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| RejectedItem {
                    line: r["line"].as_u64().unwrap_or(0) as usize,
                    reason: r["reason"]
                        .as_str()
                        .unwrap_or("refused by the plugin")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_string)
}

#[async_trait]
impl Provider for PluginProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, d: &OutboundDelivery) -> Result<Sent, ProviderError> {
        let mut input = json!({
            "delivery_id": d.delivery_id,
            "message_id": d.message_id,
            "app": d.app,
            "cid": d.cid,
            "from": d.from,
            "payload": *d.payload,
            "ttl_ms": d.ttl.as_millis() as u64,
            "attempt": d.attempt,
            "idempotency_key": d.idempotency_key,
        });
        if let Some(n) = &d.notification {
            input["notification"] = json!(n.as_ref());
        }
        let input = input.to_string();
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| {
            ProviderError::transient("plugin_stopped", "the plugin's permits are closed")
        })?;
        let instance = self.instance.clone();
        let vtable = self.lib.vtable;
        let max = self.settings.max_result_bytes;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let send = vtable.send;
            call(vtable, send, instance.ptr, input.as_bytes(), max)
        });
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let answer = match tokio::time::timeout(timeout, job).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.fault("crashed", &e.to_string());
                return Err(ProviderError::transient(
                    "plugin_crashed",
                    "the plugin call failed",
                ));
            }
            Err(_) => {
                self.fault("timeout", "send");
                return Err(ProviderError::transient(
                    "plugin_timeout",
                    format!(
                        "plugin {} did not answer within {} ms",
                        self.lib.name,
                        timeout.as_millis()
                    ),
                ));
            }
        };
        let parsed: Option<Value> = if answer.too_large {
            self.fault("huge_result", "send");
            None
        } else {
            match serde_json::from_slice(&answer.bytes) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.fault("bad_json", &e.to_string());
                    None
                }
            }
        };
        let detail = |v: &Option<Value>, default_code: &str| {
            let code = v
                .as_ref()
                .and_then(|v| text(v, "code"))
                .unwrap_or_else(|| default_code.to_string());
            let message = v
                .as_ref()
                .and_then(|v| text(v, "message"))
                .unwrap_or_else(|| format!("plugin {} gave no detail", self.lib.name));
            (code, message)
        };
        match answer.status {
            status::OK => Ok(Sent {
                // Without a readable reference the idempotency key stands in for it.
                provider_ref: parsed
                    .as_ref()
                    .and_then(|v| text(v, "provider_ref"))
                    .unwrap_or_else(|| d.idempotency_key.clone()),
            }),
            status::TRANSIENT => {
                let (code, message) = detail(&parsed, "plugin_transient");
                let mut e = ProviderError::transient(code, message);
                if let Some(ms) = parsed.as_ref().and_then(|v| v["retry_after_ms"].as_u64()) {
                    e = e.retry_after(Duration::from_millis(ms));
                }
                Err(e)
            }
            status::PERMANENT => {
                let (code, message) = detail(&parsed, "plugin_permanent");
                Err(ProviderError::permanent(code, message))
            }
            status::BAD_INPUT => {
                self.fault("bad_input", "send");
                let (_, message) = detail(&parsed, "plugin_bad_input");
                Err(ProviderError::permanent("plugin_bad_input", message))
            }
            status::PANIC => {
                self.fault("panic", "send");
                Err(ProviderError::transient(
                    "plugin_panic",
                    format!("plugin {} panicked", self.lib.name),
                ))
            }
            other => {
                self.fault("unknown_status", &other.to_string());
                Err(ProviderError::transient(
                    "plugin_unknown_status",
                    format!("plugin {} returned unknown status {other}", self.lib.name),
                ))
            }
        }
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: None,
            send_timeout: Duration::from_millis(self.settings.timeout_ms + 1000),
            receipt_timeout: (self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    fn parse_receipts(&self, request: &CallbackRequest) -> Result<ParsedReceipts, CallbackError> {
        let end = std::mem::offset_of!(PluginVtable, parse_receipts)
            + std::mem::size_of::<Option<ParseFn>>();
        let f = self.optional(end, self.lib.vtable.parse_receipts);
        let v = self.parse(f, "receipt", &request.body)?;
        let mut parsed = ParsedReceipts {
            receipts: Vec::new(),
            rejected: rejected(&v),
        };
        for r in v["receipts"].as_array().into_iter().flatten() {
            let (Some(provider_ref), Some(cid)) = (text(r, "provider_ref"), text(r, "cid")) else {
                self.fault("bad_json", "receipt without provider_ref or cid");
                continue;
            };
            let status = match r["status"].as_str() {
                Some("delivered") => ReceiptStatus::Delivered,
                _ => ReceiptStatus::Failed {
                    code: text(r, "code").unwrap_or_else(|| "failed".into()),
                    message: text(r, "message")
                        .unwrap_or_else(|| "the device reported a failure".into()),
                },
            };
            parsed.receipts.push(Receipt {
                provider_ref,
                cid,
                status,
                at: None,
            });
        }
        Ok(parsed)
    }

    fn parse_upstream(&self, request: &CallbackRequest) -> Result<ParsedUpstream, CallbackError> {
        let end = std::mem::offset_of!(PluginVtable, parse_upstream)
            + std::mem::size_of::<Option<ParseFn>>();
        let f = self.optional(end, self.lib.vtable.parse_upstream);
        let v = self.parse(f, "upstream", &request.body)?;
        let mut parsed = ParsedUpstream {
            messages: Vec::new(),
            rejected: rejected(&v),
        };
        for u in v["messages"].as_array().into_iter().flatten() {
            let (Some(cid), Some(msgid), Some(payload)) =
                (text(u, "cid"), text(u, "msgid"), text(u, "payload"))
            else {
                self.fault("bad_json", "upstream message without cid, msgid or payload");
                continue;
            };
            parsed.messages.push(Upstream {
                cid,
                msgid,
                payload,
                sent_at: u["sent_at"].as_u64(),
            });
        }
        Ok(parsed)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

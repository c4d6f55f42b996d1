//! Write a pushgate provider plugin in safe Rust.
//!
//! ```
//! use pushgate_plugin_sdk::{export_provider, Delivery, Plugin, SendError, Sent};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn create(_options: serde_json::Value) -> Result<Self, String> {
//!         Ok(Hello)
//!     }
//!     fn send(&self, delivery: &Delivery) -> Result<Sent, SendError> {
//!         Ok(Sent { provider_ref: delivery.idempotency_key.clone() })
//!     }
//! }
//!
//! export_provider!(Hello, "hello", "0.1.0");
//! ```
//!
//! Build it as a `cdylib`, name it in the config (`kind = "plugin"`, `path = …`), restart.
//! The macro generates the C ABI of `pushgate-plugin-abi`: it owns every buffer, turns JSON
//! into your types and back, and catches every panic (reported as `PANIC`).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use pushgate_plugin_abi as abi;
use pushgate_plugin_abi::{status, Buffer};
use serde::{Deserialize, Serialize};

/// One delivery to send.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Delivery {
    pub delivery_id: String,
    pub message_id: String,
    pub app: String,
    pub cid: String,
    #[serde(default)]
    pub from: Option<String>,
    pub payload: serde_json::Value,
    /// Time left before the message expires.
    pub ttl_ms: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across retries: use it as the provider's request id.
    pub idempotency_key: String,
    /// `{"title", "body"}`: what the phone shows when the app is not running, if the message
    /// has it.
    #[serde(default)]
    pub notification: Option<serde_json::Value>,
}

/// A successful hand-off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sent {
    /// The provider's reference, echoed in its receipts.
    pub provider_ref: String,
}

/// A failed send, with the retry decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    Transient {
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    Permanent {
        code: String,
        message: String,
    },
}

/// A verified receipt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    pub provider_ref: String,
    pub cid: String,
    /// `"delivered"` or `"failed"`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A verified upstream message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Upstream {
    pub cid: String,
    pub msgid: String,
    pub payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

/// A refused callback line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
}

/// What a receipts callback contained.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipts {
    pub receipts: Vec<Receipt>,
    pub rejected: Vec<Rejected>,
}

/// What an upstream callback contained.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamMessages {
    pub messages: Vec<Upstream>,
    pub rejected: Vec<Rejected>,
}

/// A provider plugin. `send` is called from several threads at once, and may block.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Builds an instance from the provider's `options` table.
    fn create(options: serde_json::Value) -> Result<Self, String>;

    /// Hands one delivery to the provider.
    fn send(&self, delivery: &Delivery) -> Result<Sent, SendError>;

    /// Parses and verifies a receipts callback body; `None`: receipts are not supported.
    fn parse_receipts(&self, _body: &[u8]) -> Option<Receipts> {
        None
    }

    /// Parses and verifies an upstream callback body; `None`: upstream is not supported.
    fn parse_upstream(&self, _body: &[u8]) -> Option<UpstreamMessages> {
        None
    }
}

/// Hands `bytes` to the host as a plugin-owned buffer.
fn give(bytes: Vec<u8>) -> Buffer {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    Buffer {
        ptr: Box::into_raw(boxed) as *mut u8,
        len,
    }
}

fn write(out: *mut Buffer, bytes: Vec<u8>) {
    if !out.is_null() {
        // SAFETY: the host passes a valid, writable Buffer.
        unsafe { *out = give(bytes) };
    }
}

fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the host passes `len` readable bytes at `ptr` for the call's duration.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// `free_buffer` of every SDK plugin.
///
/// # Safety
/// `buffer` must come from this plugin and be freed once.
pub unsafe extern "C" fn free_buffer(buffer: Buffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: built by `give` from a boxed slice of exactly `len` bytes.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buffer.ptr, buffer.len)) });
    }
}

/// `create` for plugin type `P`.
///
/// # Safety
/// Called by the host per the ABI.
pub unsafe extern "C" fn create<P: Plugin>(
    options: *const u8,
    len: usize,
    instance: *mut *mut c_void,
    error: *mut Buffer,
) -> i32 {
    let result = catch_unwind(|| {
        let options: serde_json::Value = match serde_json::from_slice(input(options, len)) {
            Ok(v) => v,
            Err(e) => return Err((status::BAD_INPUT, format!("options are not JSON: {e}"))),
        };
        P::create(options).map_err(|e| (status::CREATE_FAILED, e))
    });
    match result {
        Ok(Ok(plugin)) => {
            if !instance.is_null() {
                // SAFETY: the host passes a writable pointer.
                unsafe { *instance = Box::into_raw(Box::new(plugin)) as *mut c_void };
            }
            status::OK
        }
        Ok(Err((code, message))) => {
            write(error, message.into_bytes());
            code
        }
        Err(_) => {
            write(error, b"the plugin panicked in create".to_vec());
            status::PANIC
        }
    }
}

/// `destroy` for plugin type `P`.
///
/// # Safety
/// `instance` must come from `create::<P>` and be destroyed once.
pub unsafe extern "C" fn destroy<P: Plugin>(instance: *mut c_void) {
    if !instance.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: made by `create::<P>` with Box::into_raw.
            drop(unsafe { Box::from_raw(instance as *mut P) });
        }));
    }
}

fn plugin<'a, P: Plugin>(instance: *mut c_void) -> Option<&'a P> {
    // SAFETY: the host passes the pointer `create::<P>` returned, alive until destroy.
    (!instance.is_null()).then(|| unsafe { &*(instance as *const P) })
}

/// `send` for plugin type `P`.
///
/// # Safety
/// Called by the host per the ABI.
pub unsafe extern "C" fn send<P: Plugin>(
    instance: *mut c_void,
    delivery: *const u8,
    len: usize,
    result: *mut Buffer,
) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Some(p) = plugin::<P>(instance) else {
            return (
                status::BAD_INPUT,
                serde_json::json!({"code": "no_instance", "message": "null instance"}),
            );
        };
        let delivery: Delivery = match serde_json::from_slice(input(delivery, len)) {
            Ok(d) => d,
            Err(e) => {
                return (
                    status::BAD_INPUT,
                    serde_json::json!({"code": "bad_input", "message": e.to_string()}),
                )
            }
        };
        match p.send(&delivery) {
            Ok(sent) => (
                status::OK,
                serde_json::json!({"provider_ref": sent.provider_ref}),
            ),
            Err(SendError::Transient {
                code,
                message,
                retry_after_ms,
            }) => (
                status::TRANSIENT,
                serde_json::json!({"code": code, "message": message, "retry_after_ms": retry_after_ms}),
            ),
            Err(SendError::Permanent { code, message }) => (
                status::PERMANENT,
                serde_json::json!({"code": code, "message": message}),
            ),
        }
    }));
    match outcome {
        Ok((code, json)) => {
            write(result, json.to_string().into_bytes());
            code
        }
        Err(_) => status::PANIC,
    }
}

fn parse_with<T: Serialize>(
    result: *mut Buffer,
    f: impl FnOnce() -> Option<T> + std::panic::UnwindSafe,
) -> i32 {
    match catch_unwind(f) {
        Ok(Some(parsed)) => {
            write(result, serde_json::to_vec(&parsed).unwrap_or_default());
            status::OK
        }
        Ok(None) => status::BAD_INPUT,
        Err(_) => status::PANIC,
    }
}

/// `parse_receipts` for plugin type `P`.
///
/// # Safety
/// Called by the host per the ABI.
pub unsafe extern "C" fn parse_receipts<P: Plugin>(
    instance: *mut c_void,
    body: *const u8,
    len: usize,
    result: *mut Buffer,
) -> i32 {
    let body = input(body, len);
    parse_with(
        result,
        AssertUnwindSafe(|| plugin::<P>(instance)?.parse_receipts(body)),
    )
}

/// `parse_upstream` for plugin type `P`.
///
/// # Safety
/// Called by the host per the ABI.
pub unsafe extern "C" fn parse_upstream<P: Plugin>(
    instance: *mut c_void,
    body: *const u8,
    len: usize,
    result: *mut Buffer,
) -> i32 {
    let body = input(body, len);
    parse_with(
        result,
        AssertUnwindSafe(|| plugin::<P>(instance)?.parse_upstream(body)),
    )
}

/// The vtable as a `static` (raw pointers are not `Sync` by themselves).
#[doc(hidden)]
pub struct StaticVtable(pub abi::PluginVtable);

// SAFETY: the vtable only holds function pointers and pointers to static strings.
unsafe impl Sync for StaticVtable {}

/// Exports `$plugin` (a type implementing [`Plugin`]) as a pushgate plugin named `$name`,
/// version `$version` (string literals).
#[macro_export]
macro_rules! export_provider {
    ($plugin:ty, $name:literal, $version:literal) => {
        static PUSHGATE_PLUGIN_VTABLE: $crate::StaticVtable =
            $crate::StaticVtable($crate::abi::PluginVtable {
                struct_size: ::std::mem::size_of::<$crate::abi::PluginVtable>(),
                abi_version: $crate::abi::ABI_VERSION,
                name: concat!($name, "\0").as_ptr() as *const ::std::ffi::c_char,
                version: concat!($version, "\0").as_ptr() as *const ::std::ffi::c_char,
                create: $crate::create::<$plugin>,
                send: $crate::send::<$plugin>,
                free_buffer: $crate::free_buffer,
                destroy: $crate::destroy::<$plugin>,
                parse_receipts: Some($crate::parse_receipts::<$plugin>),
                parse_upstream: Some($crate::parse_upstream::<$plugin>),
            });

        /// The ABI version (checked by the host first).
        #[no_mangle]
        pub extern "C" fn pushgate_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// The plugin's vtable.
        #[no_mangle]
        pub extern "C" fn pushgate_plugin_entry() -> *const $crate::abi::PluginVtable {
            &PUSHGATE_PLUGIN_VTABLE.0
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Plugin for Echo {
        fn create(options: serde_json::Value) -> Result<Self, String> {
            if options["fail"] == true {
                return Err("asked to fail".into());
            }
            Ok(Echo)
        }
        fn send(&self, d: &Delivery) -> Result<Sent, SendError> {
            match d.cid.as_str() {
                "panic" => panic!("boom"),
                "busy" => Err(SendError::Transient {
                    code: "busy".into(),
                    message: "try later".into(),
                    retry_after_ms: Some(50),
                }),
                _ => Ok(Sent {
                    provider_ref: d.idempotency_key.clone(),
                }),
            }
        }
    }

    export_provider!(Echo, "echo", "1.2.3");

    fn take(buffer: Buffer) -> String {
        let text = String::from_utf8_lossy(input(buffer.ptr, buffer.len)).into_owned();
        // SAFETY: made by this plugin.
        unsafe { free_buffer(buffer) };
        text
    }

    #[test]
    fn the_generated_abi_round_trips_and_catches_panics() {
        assert_eq!(pushgate_plugin_abi_version(), abi::ABI_VERSION);
        // SAFETY: the entry returns a pointer to a static.
        let vt = unsafe { &*pushgate_plugin_entry() };
        assert_eq!(vt.struct_size, std::mem::size_of::<abi::PluginVtable>());
        // SAFETY: static NUL-terminated strings.
        assert_eq!(
            unsafe { std::ffi::CStr::from_ptr(vt.name) }.to_str(),
            Ok("echo")
        );
        let mut instance = std::ptr::null_mut();
        let mut error = Buffer::EMPTY;
        let bad = b"{\"fail\": true}";
        // SAFETY: valid pointers per the ABI.
        let code = unsafe { (vt.create)(bad.as_ptr(), bad.len(), &mut instance, &mut error) };
        assert_eq!(code, status::CREATE_FAILED);
        assert_eq!(take(error), "asked to fail");
        let good = b"{}";
        // SAFETY: as above.
        assert_eq!(
            unsafe { (vt.create)(good.as_ptr(), good.len(), &mut instance, &mut error) },
            status::OK
        );
        let send = |cid: &str| {
            let d =
                serde_json::json!({"delivery_id": "m-0", "message_id": "m", "app": "a", "cid": cid,
                "payload": 1, "ttl_ms": 5, "attempt": 1, "idempotency_key": "m-0"})
                .to_string();
            let mut out = Buffer::EMPTY;
            // SAFETY: as above.
            let code = unsafe { (vt.send)(instance, d.as_ptr(), d.len(), &mut out) };
            (
                code,
                if out.ptr.is_null() {
                    String::new()
                } else {
                    take(out)
                },
            )
        };
        assert_eq!(
            send("c1"),
            (status::OK, "{\"provider_ref\":\"m-0\"}".to_string())
        );
        let (code, body) = send("busy");
        assert_eq!(code, status::TRANSIENT);
        assert!(body.contains("\"retry_after_ms\":50"));
        assert_eq!(send("panic").0, status::PANIC);
        let mut out = Buffer::EMPTY;
        // SAFETY: as above.
        assert_eq!(
            unsafe { (vt.send)(instance, b"nope".as_ptr(), 4, &mut out) },
            status::BAD_INPUT
        );
        take(out);
        // SAFETY: made by create, destroyed once.
        unsafe { (vt.destroy)(instance) };
    }
}

//! A deliberately misbehaving plugin, for pushgate's fault tests. `options.mode`:
//! `panic` (panics in send; the SDK reports PANIC), `bad_json` (OK with a non-JSON result),
//! `unknown_status` (returns 42), `huge` (a 64 MiB result), `slow` (sleeps `sleep_ms`, then
//! sends), `create_error` (refuses to start). Written against the raw ABI where the SDK
//! would not let it misbehave.

use std::ffi::c_void;
use std::time::Duration;

use pushgate_plugin_sdk::abi::{self, status, Buffer};
use pushgate_plugin_sdk::{Delivery, Plugin, SendError, Sent, StaticVtable};
use serde_json::Value;

pub struct Faulty {
    mode: String,
    sleep: Duration,
}

impl Plugin for Faulty {
    fn create(options: Value) -> Result<Self, String> {
        let mode = options["mode"].as_str().unwrap_or("ok").to_string();
        if mode == "create_error" {
            return Err("refusing to start (mode create_error)".into());
        }
        Ok(Faulty {
            mode,
            sleep: Duration::from_millis(options["sleep_ms"].as_u64().unwrap_or(0)),
        })
    }

    fn send(&self, d: &Delivery) -> Result<Sent, SendError> {
        match self.mode.as_str() {
            "panic" => panic!("faulty plugin: panic on purpose"),
            "slow" => std::thread::sleep(self.sleep),
            _ => {}
        }
        Ok(Sent {
            provider_ref: d.idempotency_key.clone(),
        })
    }
}

fn give(bytes: Vec<u8>) -> Buffer {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    Buffer {
        ptr: Box::into_raw(boxed) as *mut u8,
        len,
    }
}

/// `send` that misbehaves on the wire for the raw modes, and defers to the SDK otherwise.
unsafe extern "C" fn send(
    instance: *mut c_void,
    delivery: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    // SAFETY: the host passes the instance `create` made.
    let mode = unsafe { (instance as *const Faulty).as_ref() }
        .map(|f| f.mode.clone())
        .unwrap_or_default();
    let answer = |bytes: Vec<u8>| {
        if !out.is_null() {
            // SAFETY: the host passes a writable Buffer.
            unsafe { *out = give(bytes) };
        }
    };
    match mode.as_str() {
        "bad_json" => {
            answer(b"this is not json {".to_vec());
            status::OK
        }
        "unknown_status" => {
            answer(b"{}".to_vec());
            42
        }
        "huge" => {
            answer(vec![b' '; 64 * 1024 * 1024]);
            status::OK
        }
        // SAFETY: same contract.
        _ => unsafe { pushgate_plugin_sdk::send::<Faulty>(instance, delivery, len, out) },
    }
}

static VTABLE: StaticVtable = StaticVtable(abi::PluginVtable {
    struct_size: std::mem::size_of::<abi::PluginVtable>(),
    abi_version: abi::ABI_VERSION,
    name: c"faulty".as_ptr(),
    version: c"0.0.1".as_ptr(),
    create: pushgate_plugin_sdk::create::<Faulty>,
    send,
    free_buffer: pushgate_plugin_sdk::free_buffer,
    destroy: pushgate_plugin_sdk::destroy::<Faulty>,
    parse_receipts: None,
    parse_upstream: None,
});

#[no_mangle]
pub extern "C" fn pushgate_plugin_abi_version() -> u32 {
    abi::ABI_VERSION
}

#[no_mangle]
pub extern "C" fn pushgate_plugin_entry() -> *const abi::PluginVtable {
    &VTABLE.0
}

//! The C ABI between pushgate and provider plugins. No dependencies; mirrored by
//! `pushgate_plugin.h` for plugins in other languages.
//!
//! A plugin is a shared library exporting two symbols:
//! - [`ABI_VERSION_SYMBOL`]: `uint32_t pushgate_plugin_abi_version(void)`, checked first;
//! - [`ENTRY_SYMBOL`]: `const pushgate_plugin_vtable *pushgate_plugin_entry(void)`.
//!
//! Data crosses as UTF-8 JSON bytes. Buffers a plugin returns are allocated by the plugin and
//! released by the host through the vtable's `free_buffer`; the host never frees plugin
//! memory itself, nor the plugin the host's. Every function must catch its own panics or
//! exceptions and return a status. Instances are used from several threads at once.
//!
//! The vtable grows append-only: `struct_size` says how much of it the plugin filled, and the
//! host reads an optional field only when `struct_size` covers it.

use std::ffi::{c_char, c_void};

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;
/// `uint32_t pushgate_plugin_abi_version(void)`.
pub const ABI_VERSION_SYMBOL: &[u8] = b"pushgate_plugin_abi_version\0";
/// `const pushgate_plugin_vtable *pushgate_plugin_entry(void)`.
pub const ENTRY_SYMBOL: &[u8] = b"pushgate_plugin_entry\0";

/// Status codes every plugin function returns.
pub mod status {
    /// `create`/parsers: success. `send`: handed to the provider (result: `{"provider_ref"}`).
    pub const OK: i32 = 0;
    /// `send`: failed, may be retried (result: `{"code","message","retry_after_ms"?}`).
    pub const TRANSIENT: i32 = 1;
    /// `send`: failed for good (result: `{"code","message"}`).
    pub const PERMANENT: i32 = 2;
    /// The input JSON was not understood.
    pub const BAD_INPUT: i32 = 3;
    /// The plugin caught a panic or exception.
    pub const PANIC: i32 = 4;
    /// `create`: the options were refused (error: a UTF-8 message).
    pub const CREATE_FAILED: i32 = 5;
}

/// Bytes allocated by the plugin. Release with the vtable's `free_buffer`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Buffer {
    /// A buffer that holds nothing (nothing to free).
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
}

/// `create(options_json, len, &instance, &error)`.
pub type CreateFn = unsafe extern "C" fn(*const u8, usize, *mut *mut c_void, *mut Buffer) -> i32;
/// `send(instance, delivery_json, len, &result)`.
pub type SendFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buffer) -> i32;
/// `free_buffer(buffer)`.
pub type FreeBufferFn = unsafe extern "C" fn(Buffer);
/// `destroy(instance)`.
pub type DestroyFn = unsafe extern "C" fn(*mut c_void);
/// `parse_receipts(instance, body, len, &result)` / `parse_upstream(…)`: optional.
pub type ParseFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut Buffer) -> i32;

/// The table of a plugin's functions.
#[repr(C)]
pub struct PluginVtable {
    /// `sizeof` the vtable as the plugin was compiled (append-only growth).
    pub struct_size: usize,
    pub abi_version: u32,
    /// Static, NUL-terminated.
    pub name: *const c_char,
    /// Static, NUL-terminated.
    pub version: *const c_char,
    pub create: CreateFn,
    pub send: SendFn,
    pub free_buffer: FreeBufferFn,
    pub destroy: DestroyFn,
    /// May be null: the plugin takes no receipt callbacks.
    pub parse_receipts: Option<ParseFn>,
    /// May be null: the plugin takes no upstream callbacks.
    pub parse_upstream: Option<ParseFn>,
}

/// The smallest vtable a host accepts: everything up to `destroy`.
pub const MIN_VTABLE_SIZE: usize = std::mem::offset_of!(PluginVtable, parse_receipts);

/// The vtable's field names in order, as the C header must declare them.
pub const VTABLE_FIELDS: &[&str] = &[
    "struct_size",
    "abi_version",
    "name",
    "version",
    "create",
    "send",
    "free_buffer",
    "destroy",
    "parse_receipts",
    "parse_upstream",
];

/// The C header, kept in sync with this file (checked by a test).
pub const C_HEADER: &str = include_str!("../pushgate_plugin.h");

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names declared inside `typedef struct pushgate_plugin_vtable { … }`.
    fn header_fields() -> Vec<String> {
        let start = C_HEADER
            .find("typedef struct pushgate_plugin_vtable {")
            .expect("vtable in header");
        let body = &C_HEADER[start..];
        let body = &body
            [body.find('{').expect("{") + 1..body.find("} pushgate_plugin_vtable;").expect("}")];
        body.split(';')
            .filter_map(|decl| {
                let decl = decl
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let decl = decl.trim();
                if decl.is_empty() {
                    return None;
                }
                // `type (*name)(args)` or `type name`.
                let name = match decl.find("(*") {
                    Some(i) => decl[i + 2..].split(')').next().unwrap_or(""),
                    None => decl
                        .split_whitespace()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches('*'),
                };
                Some(name.to_string())
            })
            .collect()
    }

    #[test]
    fn the_c_header_matches_the_rust_abi() {
        assert_eq!(header_fields(), VTABLE_FIELDS);
        assert!(C_HEADER.contains(&format!(
            "#define PUSHGATE_PLUGIN_ABI_VERSION {ABI_VERSION}u"
        )));
        for (name, value) in [
            ("OK", status::OK),
            ("TRANSIENT", status::TRANSIENT),
            ("PERMANENT", status::PERMANENT),
            ("BAD_INPUT", status::BAD_INPUT),
            ("PANIC", status::PANIC),
            ("CREATE_FAILED", status::CREATE_FAILED),
        ] {
            assert!(
                C_HEADER.contains(&format!("#define PUSHGATE_STATUS_{name} {value}")),
                "status {name}"
            );
        }
        for symbol in [ABI_VERSION_SYMBOL, ENTRY_SYMBOL] {
            let name = std::str::from_utf8(&symbol[..symbol.len() - 1]).expect("utf-8");
            assert!(C_HEADER.contains(name), "{name}");
        }
    }

    #[test]
    fn the_minimum_size_ends_at_destroy() {
        assert_eq!(
            MIN_VTABLE_SIZE,
            std::mem::offset_of!(PluginVtable, destroy) + std::mem::size_of::<DestroyFn>()
        );
        assert!(MIN_VTABLE_SIZE < std::mem::size_of::<PluginVtable>());
    }
}

//! Loading a plugin library once and checking its ABI.

use std::collections::HashMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use pushgate_engine::metrics as m;
use pushgate_plugin_abi::{
    PluginVtable, ABI_VERSION, ABI_VERSION_SYMBOL, ENTRY_SYMBOL, MIN_VTABLE_SIZE,
};

use super::PluginError;

/// A plugin's vtable: function pointers and pointers to static strings of a library that is
/// never unloaded.
#[derive(Clone, Copy)]
pub(super) struct Vtable(pub &'static PluginVtable);

// SAFETY: the table is immutable and lives as long as the process; the ABI requires its
// functions to be callable from any thread.
unsafe impl Send for Vtable {}
// SAFETY: as above.
unsafe impl Sync for Vtable {}

impl std::ops::Deref for Vtable {
    type Target = PluginVtable;
    fn deref(&self) -> &PluginVtable {
        self.0
    }
}

/// A loaded, checked plugin library (alive for the rest of the process).
pub struct PluginLibrary {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub(super) vtable: Vtable,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl PluginLibrary {
    /// Whether the vtable the plugin filled reaches `field_end` bytes.
    pub(super) fn has(&self, field_end: usize) -> bool {
        self.vtable.struct_size >= field_end
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, &'static PluginLibrary>> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, &'static PluginLibrary>>> = OnceLock::new();
    LIBRARIES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads (once per canonical path) and checks a plugin library.
pub fn load(path: &Path) -> Result<&'static PluginLibrary, PluginError> {
    let fail = |reason: String| PluginError {
        path: path.display().to_string(),
        reason,
    };
    let canonical = path
        .canonicalize()
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut libraries = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lib) = libraries.get(&canonical) {
        return Ok(lib);
    }
    let result = check(&canonical).map_err(fail);
    let (name, version, outcome) = match &result {
        Ok(lib) => (lib.name.clone(), lib.version.clone(), "loaded"),
        Err(_) => ("unknown".to_string(), "unknown".to_string(), "refused"),
    };
    metrics::counter!(m::PLUGIN_LOADS_TOTAL, "plugin" => name, "version" => version, "result" => outcome).increment(1);
    let lib: &'static PluginLibrary = Box::leak(Box::new(result?));
    libraries.insert(canonical, lib);
    tracing::info!(plugin = %lib.name, version = %lib.version, path = %lib.path.display(), "plugin loaded");
    Ok(lib)
}

fn check(path: &Path) -> Result<PluginLibrary, String> {
    // SAFETY: loading runs the library's initialisers; that is the trust an operator gives a
    // plugin by naming it in the config. The library is never unloaded (leaked below).
    let library =
        unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is fixed by the ABI.
    let version_fn = unsafe { library.get::<unsafe extern "C" fn() -> u32>(ABI_VERSION_SYMBOL) }
        .map_err(|_| {
            "missing symbol pushgate_plugin_abi_version (not a pushgate plugin?)".to_string()
        })?;
    // SAFETY: as above; a plain call without arguments.
    let abi = unsafe { version_fn() };
    if abi != ABI_VERSION {
        return Err(format!(
            "ABI version {abi}, but this pushgate speaks version {ABI_VERSION}"
        ));
    }
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry =
        unsafe { library.get::<unsafe extern "C" fn() -> *const PluginVtable>(ENTRY_SYMBOL) }
            .map_err(|_| "missing symbol pushgate_plugin_entry".to_string())?;
    // SAFETY: a plain call; the pointer is checked for null below.
    let vtable = unsafe { entry() };
    if vtable.is_null() {
        return Err("pushgate_plugin_entry returned null".into());
    }
    // Read struct_size alone first: a too-small table must not be read further.
    // SAFETY: every vtable starts with `struct_size`.
    let size = unsafe { std::ptr::read(vtable as *const usize) };
    if size < MIN_VTABLE_SIZE {
        return Err(format!(
            "vtable of {size} bytes is smaller than the {MIN_VTABLE_SIZE} the ABI requires"
        ));
    }
    // SAFETY: at least MIN_VTABLE_SIZE bytes are valid, and the library is never unloaded;
    // optional fields are only read when `struct_size` covers them.
    let vtable: &'static PluginVtable = unsafe { &*vtable };
    let text = |p: *const std::ffi::c_char, what: &str| -> Result<String, String> {
        if p.is_null() {
            return Err(format!("the vtable's {what} is null"));
        }
        // SAFETY: the ABI requires static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }
            .to_str()
            .map(str::to_string)
            .map_err(|_| format!("the vtable's {what} is not UTF-8"))
    };
    Ok(PluginLibrary {
        path: path.to_path_buf(),
        name: text(vtable.name, "name")?,
        version: text(vtable.version, "version")?,
        vtable: Vtable(vtable),
    })
}

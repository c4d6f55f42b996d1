//! Checking that a plugin path names an ELF shared object, from its header bytes only
//! (nothing is loaded or run): what `check-config` reports before a start would fail.

use std::io::Read;
use std::path::Path;

/// `\x7fELF`, the first four bytes of every ELF file.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Bytes read: the ELF identification (16) and `e_type` (2).
const HEADER_BYTES: usize = 18;
/// `e_type` of a shared object (also of position-independent executables).
const ET_DYN: u16 = 3;
/// `EI_DATA` values: little and big endian.
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;

/// Why a plugin path cannot be loaded; the message is for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedObjectError {
    #[error("{path}: no such file")]
    Missing { path: String },
    #[error("{path}: is a directory, not a shared library")]
    Directory { path: String },
    #[error("{path}: cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: not an ELF shared object ({found})")]
    NotElf { path: String, found: String },
}

/// Checks that `path` exists, is readable, and starts with an ELF header of a shared object.
pub fn check(path: &Path) -> Result<(), SharedObjectError> {
    let shown = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SharedObjectError::Missing { path: shown })
        }
        Err(e) => {
            return Err(SharedObjectError::Unreadable {
                path: shown,
                reason: e.to_string(),
            })
        }
    };
    if metadata.is_dir() {
        return Err(SharedObjectError::Directory { path: shown });
    }
    let mut header = Vec::with_capacity(HEADER_BYTES);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_BYTES as u64).read_to_end(&mut header))
        .map_err(|e| SharedObjectError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    kind_of(&header).map_err(|found| SharedObjectError::NotElf { path: shown, found })
}

/// Ok for the header of an ELF shared object; otherwise what the bytes are instead.
fn kind_of(header: &[u8]) -> Result<(), String> {
    if header.len() < 4 || &header[..4] != ELF_MAGIC {
        return Err(if header.is_empty() {
            "the file is empty".into()
        } else if header
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            "it looks like a text file".into()
        } else {
            "no ELF header".into()
        });
    }
    if header.len() < HEADER_BYTES {
        return Err("the ELF header is truncated".into());
    }
    let e_type = match header[5] {
        ELFDATA2LSB => u16::from_le_bytes([header[16], header[17]]),
        ELFDATA2MSB => u16::from_be_bytes([header[16], header[17]]),
        other => return Err(format!("unknown ELF byte order {other}")),
    };
    match e_type {
        ET_DYN => Ok(()),
        1 => Err("an ELF relocatable object (.o), not a shared library".into()),
        2 => Err("an ELF executable, not a shared library".into()),
        4 => Err("an ELF core dump".into()),
        other => Err(format!("ELF file of type {other}, not a shared library")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(e_type: u16, big_endian: bool) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend_from_slice(&[2, if big_endian { 2 } else { 1 }, 1, 0]);
        h.extend_from_slice(&[0; 8]);
        if big_endian {
            h.extend_from_slice(&e_type.to_be_bytes());
        } else {
            h.extend_from_slice(&e_type.to_le_bytes());
        }
        h
    }

    #[test]
    fn shared_objects_pass_and_everything_else_is_named() {
        assert_eq!(kind_of(&elf(ET_DYN, false)), Ok(()));
        assert_eq!(kind_of(&elf(ET_DYN, true)), Ok(()));
        assert!(kind_of(&elf(2, false)).unwrap_err().contains("executable"));
        assert!(kind_of(&elf(1, false)).unwrap_err().contains("relocatable"));
        assert!(kind_of(b"").unwrap_err().contains("empty"));
        assert!(kind_of(b"not a library\n").unwrap_err().contains("text"));
        assert!(kind_of(b"\x7fELF\x02").unwrap_err().contains("truncated"));
        assert!(kind_of(&[0u8, 159, 146, 150])
            .unwrap_err()
            .contains("no ELF"));
    }

    #[test]
    fn files_are_checked_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.so");
        assert!(matches!(
            check(&missing),
            Err(SharedObjectError::Missing { .. })
        ));
        assert!(matches!(
            check(dir.path()),
            Err(SharedObjectError::Directory { .. })
        ));
        let text = dir.path().join("text.so");
        std::fs::write(&text, "hello").expect("write");
        assert!(matches!(
            check(&text),
            Err(SharedObjectError::NotElf { .. })
        ));
        let so = dir.path().join("lib.so");
        std::fs::write(&so, elf(ET_DYN, false)).expect("write");
        assert_eq!(check(&so), Ok(()));
    }
}

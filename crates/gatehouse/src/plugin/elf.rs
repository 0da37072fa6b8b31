//! Reading an ELF shared object's exported symbols from its bytes, without loading it: what
//! `gatehouse check` tells of a plugin file (its `gatehouse_app` entry point, the ABI
//! version it records) before any of its code runs. ELF32 and ELF64, either byte order;
//! the bytes have passed [`super::staging::check_elf`] (headers inside the file), and every
//! read here is still bounds-checked.

/// A symbol of the dynamic symbol table (`.dynsym`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// `STT_*`: 1 object, 2 function.
    pub(crate) kind: u8,
    /// Defined in the file (not an import).
    pub(crate) defined: bool,
    /// Its address (virtual).
    pub(crate) value: u64,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// `STT_OBJECT`.
pub(crate) const OBJECT: u8 = 1;
/// `STT_FUNC`.
pub(crate) const FUNC: u8 = 2;

/// An ELF file's identification (class and byte order) and its integer fields: what
/// staging's whole-file check and the symbol reader both read it with.
pub(crate) struct Elf<'a> {
    bytes: &'a [u8],
    /// ELF64 (else ELF32).
    pub(crate) wide: bool,
    little: bool,
}

impl<'a> Elf<'a> {
    /// `bytes` as an ELF file, or why they are none.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Elf<'a>, String> {
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err("invalid ELF header (not a compiled library)".into());
        }
        let wide = match bytes.get(4) {
            Some(1) => false,
            Some(2) => true,
            _ => return Err("unknown ELF class".into()),
        };
        let little = match bytes.get(5) {
            Some(1) => true,
            Some(2) => false,
            _ => return Err("unknown ELF byte order".into()),
        };
        Ok(Elf { bytes, wide, little })
    }

    /// The `size`-byte unsigned integer at `at`, in the file's byte order.
    pub(crate) fn int(&self, at: u64, size: usize) -> Result<u64, String> {
        let start = usize::try_from(at).map_err(|_| format!("offset {at} is out of range"))?;
        let field = self
            .bytes
            .get(start..start.saturating_add(size))
            .ok_or_else(|| format!("a field at byte {at} lies past the end of the file"))?;
        let mut v: u64 = 0;
        for i in 0..size {
            let b = if self.little { field[size - 1 - i] } else { field[i] };
            v = (v << 8) | u64::from(b);
        }
        Ok(v)
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, at: u64) -> Result<u64, String> {
        self.int(at, if self.wide { 8 } else { 4 })
    }

    /// Section `index`'s (type, offset, size, link, entry size).
    fn section(&self, index: u64) -> Result<(u64, u64, u64, u64, u64), String> {
        let (shoff, shentsize) = if self.wide {
            (self.int(0x28, 8)?, self.int(0x3a, 2)?)
        } else {
            (self.int(0x20, 4)?, self.int(0x2e, 2)?)
        };
        let at = shoff.saturating_add(index.saturating_mul(shentsize));
        let kind = self.int(at + 4, 4)?;
        Ok(if self.wide {
            (
                kind,
                self.int(at + 24, 8)?,
                self.int(at + 32, 8)?,
                self.int(at + 40, 4)?,
                self.int(at + 56, 8)?,
            )
        } else {
            (
                kind,
                self.int(at + 16, 4)?,
                self.int(at + 20, 4)?,
                self.int(at + 24, 4)?,
                self.int(at + 36, 4)?,
            )
        })
    }

    fn sections(&self) -> Result<u64, String> {
        self.int(if self.wide { 0x3c } else { 0x30 }, 2)
    }

    /// The NUL-terminated name at `at`.
    fn name(&self, at: u64) -> Result<&'a [u8], String> {
        let start = usize::try_from(at).map_err(|_| format!("offset {at} is out of range"))?;
        let rest = self.bytes.get(start..).ok_or("a symbol name lies past the end of the file")?;
        let end = rest.iter().position(|&b| b == 0).ok_or("a symbol name is not terminated")?;
        Ok(&rest[..end])
    }
}

/// The exported (dynamic) symbol `name` of the ELF file `bytes`: `Ok(None)` when it has no
/// such symbol, an error when its tables cannot be read (or it has no dynamic symbol table:
/// it is no shared library).
pub(crate) fn dynamic_symbol(bytes: &[u8], name: &str) -> Result<Option<Symbol>, String> {
    const SHT_DYNSYM: u64 = 11;
    let elf = Elf::new(bytes)?;
    let mut found_table = false;
    for index in 0..elf.sections()? {
        let (kind, offset, size, link, entsize) = elf.section(index)?;
        if kind != SHT_DYNSYM {
            continue;
        }
        found_table = true;
        let (_, strings, _, _, _) = elf.section(link)?;
        let entsize = if entsize == 0 { if elf.wide { 24 } else { 16 } } else { entsize };
        for i in 0..size / entsize {
            let at = offset + i * entsize;
            let sym_name = elf.name(strings.saturating_add(elf.int(at, 4)?))?;
            if sym_name != name.as_bytes() {
                continue;
            }
            let (info, shndx, value, size) = if elf.wide {
                (
                    elf.int(at + 4, 1)?,
                    elf.int(at + 6, 2)?,
                    elf.int(at + 8, 8)?,
                    elf.int(at + 16, 8)?,
                )
            } else {
                (
                    elf.int(at + 12, 1)?,
                    elf.int(at + 14, 2)?,
                    elf.int(at + 4, 4)?,
                    elf.int(at + 8, 4)?,
                )
            };
            return Ok(Some(Symbol { kind: (info & 0xf) as u8, defined: shndx != 0, value, size }));
        }
    }
    if found_table { Ok(None) } else { Err("it has no dynamic symbol table".into()) }
}

/// The `u32` the file holds at virtual address `vaddr` (in a loadable segment's file
/// bytes), as the loaded library would see it before any of its code runs.
pub(crate) fn u32_at(bytes: &[u8], vaddr: u64) -> Result<u32, String> {
    const PT_LOAD: u64 = 1;
    let elf = Elf::new(bytes)?;
    let (phoff, phentsize, phnum) = if elf.wide {
        (elf.int(0x20, 8)?, elf.int(0x36, 2)?, elf.int(0x38, 2)?)
    } else {
        (elf.int(0x1c, 4)?, elf.int(0x2a, 2)?, elf.int(0x2c, 2)?)
    };
    for i in 0..phnum {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        if elf.int(ph, 4)? != PT_LOAD {
            continue;
        }
        let (offset, start, filesz) = if elf.wide {
            (elf.word(ph + 8)?, elf.word(ph + 16)?, elf.word(ph + 32)?)
        } else {
            (elf.word(ph + 4)?, elf.word(ph + 8)?, elf.word(ph + 16)?)
        };
        if vaddr >= start && vaddr.saturating_add(4) <= start.saturating_add(filesz) {
            let v = elf.int(offset.saturating_add(vaddr - start), 4)?;
            return u32::try_from(v).map_err(|_| "not a 32-bit value".to_owned());
        }
    }
    Err(format!("address {vaddr:#x} is not in the file's loadable bytes"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian shared object: one PT_LOAD segment mapping the whole
    /// file at address 0x1000, a `.dynsym` with `symbols` (name, kind, defined, value), its
    /// string table, and the u32 `data` at file offset 0x200 (address 0x1200).
    fn elf64(symbols: &[(&str, u8, bool, u64)], data: u32) -> Vec<u8> {
        let mut f = vec![0u8; 0x400];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16] = 3; // ET_DYN
        let put = |f: &mut Vec<u8>, at: usize, v: u64, n: usize| {
            f[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        };
        // Program header at 0x40: PT_LOAD, offset 0, vaddr 0x1000, filesz 0x400.
        put(&mut f, 0x20, 0x40, 8);
        put(&mut f, 0x36, 56, 2);
        put(&mut f, 0x38, 1, 2);
        put(&mut f, 0x40, 1, 4);
        put(&mut f, 0x48, 0, 8);
        put(&mut f, 0x50, 0x1000, 8);
        put(&mut f, 0x60, 0x400, 8);
        // Strings at 0x100, symbols at 0x180 (entry 0 is the null symbol).
        let mut strings = vec![0u8];
        let mut syms = vec![0u8; 24];
        for &(name, kind, defined, value) in symbols {
            let mut s = [0u8; 24];
            s[..4].copy_from_slice(&(strings.len() as u32).to_le_bytes());
            s[4] = 0x10 | kind; // STB_GLOBAL
            s[6..8].copy_from_slice(&u16::from(defined).to_le_bytes());
            s[8..16].copy_from_slice(&value.to_le_bytes());
            s[16..24].copy_from_slice(&4u64.to_le_bytes());
            syms.extend_from_slice(&s);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        f[0x100..0x100 + strings.len()].copy_from_slice(&strings);
        f[0x180..0x180 + syms.len()].copy_from_slice(&syms);
        put(&mut f, 0x200, u64::from(data), 4);
        // Section headers at 0x280: null, .dynstr (1), .dynsym (2, linked to 1).
        put(&mut f, 0x28, 0x280, 8);
        put(&mut f, 0x3a, 64, 2);
        put(&mut f, 0x3c, 3, 2);
        let sh =
            |f: &mut Vec<u8>, i: usize, kind: u64, off: u64, size: u64, link: u64, ent: u64| {
                let at = 0x280 + i * 64;
                put(f, at + 4, kind, 4);
                put(f, at + 24, off, 8);
                put(f, at + 32, size, 8);
                put(f, at + 40, link, 4);
                put(f, at + 56, ent, 8);
            };
        sh(&mut f, 1, 3, 0x100, strings.len() as u64, 0, 0);
        sh(&mut f, 2, 11, 0x180, syms.len() as u64, 1, 24);
        f
    }

    #[test]
    fn symbols_are_found_by_name_with_their_kind_and_definition() {
        let f = elf64(
            &[
                ("malloc", FUNC, false, 0),
                ("gatehouse_app", FUNC, true, 0x1010),
                ("v", OBJECT, true, 0x1200),
            ],
            7,
        );
        for (name, want) in [
            ("gatehouse_app", Some(Symbol { kind: FUNC, defined: true, value: 0x1010, size: 4 })),
            ("malloc", Some(Symbol { kind: FUNC, defined: false, value: 0, size: 4 })),
            ("v", Some(Symbol { kind: OBJECT, defined: true, value: 0x1200, size: 4 })),
            ("gatehouse", None),
            ("gatehouse_app_", None),
        ] {
            assert_eq!(dynamic_symbol(&f, name).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn a_value_is_read_through_the_loadable_segment_that_maps_it() {
        let f = elf64(&[], 0x0002_0001);
        assert_eq!(u32_at(&f, 0x1200).unwrap(), 0x0002_0001);
        for outside in [0x0fff, 0x13fd, 0x5000] {
            assert!(u32_at(&f, outside).is_err(), "{outside:#x}");
        }
    }

    #[test]
    fn broken_tables_are_errors_not_panics() {
        let f = elf64(&[("gatehouse_app", FUNC, true, 0x1010)], 0);
        for (what, at, value) in [
            ("section headers past the end", 0x28, 0xffff_ff00u64),
            ("a string table past the end", 0x280 + 64 + 24, 0xffff_ffff),
            ("a symbol table past the end", 0x280 + 128 + 24, 0x3f0),
        ] {
            let mut g = f.clone();
            g[at..at + 8].copy_from_slice(&value.to_le_bytes());
            assert!(dynamic_symbol(&g, "gatehouse_app").is_err(), "{what}");
        }
        let mut none = f.clone();
        none[0x3c] = 1; // only the null section: no .dynsym
        assert!(dynamic_symbol(&none, "gatehouse_app").is_err());
        assert!(dynamic_symbol(b"#!/bin/sh\n", "gatehouse_app").is_err());
    }
}

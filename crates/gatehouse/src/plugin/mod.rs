//! Loading code: the private copy a plugin is loaded from ([`staging`]) and `dlopen`,
//! descriptor checks, `init` and `shutdown` ([`load`]); what `check` tells of a file without
//! running it ([`inspect`], on [`elf`]).

pub(crate) mod elf;
pub mod inspect;
pub mod load;
pub mod staging;
#[cfg(test)]
pub(crate) mod test_plugins;
